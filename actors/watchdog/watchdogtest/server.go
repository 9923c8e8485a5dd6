// Package watchdogtest runs in-process DNS servers that answer (or fail to
// answer) ready.spartan, standing in for a Spartan in probe, check and
// genresolv tests.
package watchdogtest

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Mode is how one transport of a fake Spartan behaves.
type Mode int

const (
	// Good answers ready.spartan A 127.0.0.1 (and NXDOMAIN otherwise).
	Good Mode = iota
	// Absent has no socket: UDP gets ICMP port unreachable, TCP a refused
	// connection.
	Absent
	// Silent has a socket that never answers: the prober times out.
	Silent
	// WrongIP answers ready.spartan with A 192.0.2.1.
	WrongIP
	// NXDomain answers NXDOMAIN.
	NXDomain
	// ServFail answers SERVFAIL.
	ServFail
)

func (m Mode) String() string {
	return [...]string{"good", "absent", "silent", "wrong-ip", "nxdomain", "servfail"}[m]
}

// Spec is one fake Spartan on IP: how its UDP and TCP sides behave.
type Spec struct {
	IP       netip.Addr
	UDP, TCP Mode
}

// StartGroup starts every spec on one common port (a real Spartan's bind
// IPs share udp_port) and returns that port. It retries with other random
// ports when one is taken, and stops the servers at t.Cleanup.
func StartGroup(t testing.TB, specs ...Spec) uint16 {
	t.Helper()
	var lastErr error
	for range 50 {
		port := uint16(20000 + rand.IntN(40000))
		stop, err := startAll(port, specs)
		if err == nil {
			t.Cleanup(stop)
			return port
		}
		lastErr = err
	}
	t.Fatalf("watchdogtest: no common free port for %d servers: %v", len(specs), lastErr)
	return 0
}

// Start starts one fake Spartan and returns its address.
func Start(t testing.TB, ip netip.Addr, udp, tcp Mode) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(ip, StartGroup(t, Spec{IP: ip, UDP: udp, TCP: tcp}))
}

// Loopback is 127.0.0.1.
var Loopback = netip.MustParseAddr("127.0.0.1")

func startAll(port uint16, specs []Spec) (func(), error) {
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, s := range specs {
		addr := net.JoinHostPort(s.IP.String(), strconv.Itoa(int(port)))
		// Bind everything before serving anything, so a taken port fails
		// the attempt cleanly.
		if s.UDP != Absent {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				stop()
				return nil, err
			}
			closers = append(closers, serveUDP(pc, s.UDP))
		}
		if s.TCP != Absent {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				stop()
				return nil, err
			}
			closers = append(closers, serveTCP(l, s.TCP))
		}
	}
	return stop, nil
}

func serveUDP(pc net.PacketConn, m Mode) func() {
	if m == Silent {
		return func() { pc.Close() }
	}
	srv := &dns.Server{PacketConn: pc, Handler: handler(m)}
	return run(srv)
}

func serveTCP(l net.Listener, m Mode) func() {
	if m == Silent {
		// Accept and hold connections open without a word.
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		return func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}
	}
	srv := &dns.Server{Listener: l, Handler: handler(m)}
	return run(srv)
}

func run(srv *dns.Server) func() {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	select {
	case <-started:
	case <-done:
	}
	return func() {
		_ = srv.Shutdown()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
}

func handler(m Mode) dns.HandlerFunc {
	return func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		r.Authoritative = true
		switch {
		case m == NXDomain:
			r.Rcode = dns.RcodeNameError
		case m == ServFail:
			r.Rcode = dns.RcodeServerFailure
		case len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA && dns.CanonicalName(q.Question[0].Name) == "ready.spartan.":
			ip := net.IPv4(127, 0, 0, 1)
			if m == WrongIP {
				ip = net.IPv4(192, 0, 2, 1)
			}
			r.Answer = append(r.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
				A:   ip,
			})
		default:
			r.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(r)
	}
}
