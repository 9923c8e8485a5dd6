package listener

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// BenchmarkUDPForward measures the whole UDP path (listener sockets, event
// loops, race to two upstreams, reply) with closed-loop clients
// against two in-process reflector upstreams. It reports queries per second
// and p50/p99 latency as seen by the clients.
//
// The cache is off: every query is raced (BenchmarkUDPCacheHit is the
// same path answered from the cache).
//
//	go test -run '^$' -bench UDPForward -benchtime 100000x ./actors/listener
func BenchmarkUDPForward(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchUDP(b, clients, false, false) })
	}
	// The cost of the dnstap query log (four messages per query, to a file).
	b.Run("clients=16/dnstap=file", func(b *testing.B) { benchUDP(b, 16, false, true) })
}

// BenchmarkUDPCacheHit is BenchmarkUDPForward with the cache on: after the
// first query every one is a hit, answered by the loop that read it. Its
// allocs/op are the whole process's (clients included) divided by queries.
func BenchmarkUDPCacheHit(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchUDP(b, clients, true, false) })
	}
}

func benchUDP(b *testing.B, clients int, cache, tap bool) {
	cfg := config.Default()
	if cache {
		// A reflected query has no answer record, which is not cached (a
		// NODATA without an SOA): these answer.
		for range 2 {
			cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, dnstest.Start(b, "127.0.0.1", dnstest.Answer("10.0.0.1")).Addr)
		}
	} else {
		cfg.UpstreamResolvers = []netip.AddrPort{dnstest.StartReflector(b, "127.0.0.1").Addr, dnstest.StartReflector(b, "127.0.0.1").Addr}
	}
	cfg.HandlerLimit = 100000
	cfg.Cache.Enabled = cache
	store := state.NewStore(cfg, state.NewRegistry())
	fwd := forwarder.New(store, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	if tap {
		fwd.Tap = dnstap.New("", filepath.Join(b.TempDir(), "bench.dnstap"), "bench", zerolog.Nop())
		tapped := make(chan struct{})
		go func() { _ = fwd.Tap.Serve(ctx); close(tapped) }()
		b.Cleanup(func() { cancel(); <-tapped; _ = fwd.Tap.Close() })
	}

	ip, port := testkit.FreeAddr(b)
	addr := netip.AddrPortFrom(ip, uint16(port))
	l := NewUDP(addr, fwd, zerolog.Nop())
	served := make(chan struct{})
	go func() { _ = l.Serve(ctx); close(served) }()
	b.Cleanup(func() { cancel(); <-served; l.Close() })
	time.Sleep(20 * time.Millisecond)

	m := new(dns.Msg)
	m.SetQuestion("bench.example.com.", dns.TypeA)
	q, _ := m.Pack()

	per := b.N/clients + 1
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			buf := make([]byte, 512)
			pkt := append([]byte(nil), q...)
			lat[c] = make([]time.Duration, 0, per)
			for i := range per {
				pkt[0], pkt[1] = byte(i>>8), byte(i)
				t0 := time.Now()
				_, _ = conn.Write(pkt)
				_ = conn.SetReadDeadline(t0.Add(time.Second))
				if _, err := conn.Read(buf); err != nil {
					continue // lost: not counted as a latency
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no replies")
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "qps")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(clients*per-len(all)), "lost")
}
