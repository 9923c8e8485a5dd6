package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// cacheStats is `spartanctl cache --json`.
type cacheStats struct {
	Entries, Bytes, Hits, Misses, Stale, Prefetches, Coalesced, Evictions int64
}

func ctlCache(t testing.TB, s *harness.Spartan) cacheStats {
	t.Helper()
	out, err := s.Ctl("cache", "--json")
	if err != nil {
		t.Fatalf("spartanctl cache --json: %v\n%s", err, out)
	}
	var st cacheStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("spartanctl cache --json printed %q: %v", out, err)
	}
	for _, k := range []string{"entries", "bytes", "hits", "misses", "stale", "prefetches", "coalesced", "evictions"} {
		if !strings.Contains(out, `"`+k+`"`) {
			t.Errorf("spartanctl cache --json lacks %q: %s", k, out)
		}
	}
	return st
}

// exchangeID sends a query with the given ID and name case from a socket
// of its own and returns the reply.
func exchangeID(addr netip.AddrPort, name string, id uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr.String())
	return r, err
}

// 50 concurrent identical misses reach the upstream once, although the
// daemon's SO_REUSEPORT sockets spread 50 client sockets over all of its
// UDP loops: coalescing works across loops. Every client gets its own ID
// and letter case back.
func TestCacheCoalescingAcrossLoops(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Slow(300*time.Millisecond, dnstest.Answer("10.7.7.7")))
	s := harness.Start(t, harness.Options{HTTP: true, Config: map[string]any{"upstream_resolvers": addrs(up)}})
	fd0 := harness.OpenFDs(s.PID())
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "burst.example."
			if i%2 == 1 {
				name = "BuRsT.example."
			}
			r, err := exchangeID(s.Addr, name, uint16(100+i))
			switch {
			case err != nil:
				errs <- fmt.Errorf("client %d: %w", i, err)
			case r.Id != uint16(100+i) || r.Question[0].Name != name || len(r.Answer) != 1:
				errs <- fmt.Errorf("client %d: ID %d question %q answers %d", i, r.Id, r.Question[0].Name, len(r.Answer))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// One race: one upstream query, and the retransmits of that race (the
	// upstream is slower than the hedge delay, and it is the only one).
	if races := up.Count() - retransmits(t, s); races != 1 {
		t.Errorf("upstream saw %d queries (%d retransmits) for %d identical concurrent misses, want one race", up.Count(), retransmits(t, s), n)
	}
	st := ctlCache(t, s)
	if st.Misses+st.Hits != n || st.Coalesced != st.Misses-1 {
		t.Errorf("stats %+v: want %d queries, all but one miss coalesced", st, n)
	}
	if fd := harness.SettledFDs(s.PID(), fd0+2, 3*time.Second); fd > fd0+2 {
		t.Errorf("daemon fds %d after the burst, %d before", fd, fd0)
	}
}

// spartanctl cache shows the counts, cache flush NAME removes NAME and
// what is under it (and says how many), /metrics has spartan_cache_*.
func TestCacheCtlAndMetrics(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.7.7.8"))
	s := harness.Start(t, harness.Options{HTTP: true, Config: map[string]any{"upstream_resolvers": addrs(up)}})
	names := []string{"a.flush.example.", "b.a.flush.example.", "other.example.", "a.flush.example."}
	for _, name := range names {
		if _, err := exchangeID(s.Addr, name, 1); err != nil {
			t.Fatal(err)
		}
	}
	st := ctlCache(t, s)
	if st.Entries != 3 || st.Hits != 1 || st.Misses != 3 || st.Bytes <= 0 {
		t.Errorf("stats %+v: want 3 entries, 1 hit, 3 misses", st)
	}
	out, err := s.Ctl("cache")
	if err != nil || !strings.Contains(out, "entries") || !strings.Contains(out, "coalesced") {
		t.Errorf("spartanctl cache: %v\n%s", err, out)
	}
	if out, err := s.Ctl("cache", "flush", "A.Flush.Example"); err != nil || strings.TrimSpace(out) != "2 entries flushed" {
		t.Errorf("cache flush a.flush.example: %v %q, want 2 entries flushed", err, out)
	}
	before := up.Count()
	if _, err := exchangeID(s.Addr, "b.a.flush.example.", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := exchangeID(s.Addr, "other.example.", 3); err != nil {
		t.Fatal(err)
	}
	if up.Count() != before+1 {
		t.Errorf("after the flush: %d upstream queries, want 1 (the flushed name; other.example. is still cached)", up.Count()-before)
	}
	if out, err := s.Ctl("cache", "flush"); err != nil || strings.TrimSpace(out) != "2 entries flushed" {
		t.Errorf("cache flush: %v %q, want 2 entries flushed", err, out)
	}
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"spartan_cache_entries 0", "spartan_cache_bytes 0", "spartan_cache_hits_total 2",
		"spartan_cache_misses_total 4", "spartan_cache_stale_total 0", "spartan_cache_prefetches_total 0",
		"spartan_cache_coalesced_total 0", "spartan_cache_evictions_total 0"} {
		if !strings.Contains(string(body), m+"\n") {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// With {"enabled": false} every query goes upstream and spartanctl cache
// says the cache is off.
func TestCacheOff(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.7.7.9"))
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up), "cache": noCache}})
	for range 3 {
		if _, err := exchangeID(s.Addr, "off.example.", 1); err != nil {
			t.Fatal(err)
		}
	}
	if up.Count() != 3 {
		t.Errorf("upstream saw %d queries, want 3", up.Count())
	}
	if out, err := s.Ctl("cache"); err == nil || !strings.Contains(out, "cache is off") {
		t.Errorf("spartanctl cache with the cache off: %v %q", err, out)
	}
}

// BenchmarkDaemonCacheRSS fills the real daemon's cache with 10,000 and
// 100,000 names (max_entries set to fit) and reports its RSS growth. One
// op is one fill.
//
//	CI=true go test -run '^$' -bench DaemonCacheRSS -benchtime 1x ./test/e2e
func BenchmarkDaemonCacheRSS(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				up := dnstest.Start(b, "127.0.0.1", dnstest.Answer("10.9.9.9"))
				s := harness.Start(b, harness.Options{Config: map[string]any{
					"upstream_resolvers": addrs(up),
					"cache":              map[string]any{"max_entries": n},
					"handler_limit":      4096,
				}})
				rss0 := vmRSS(b, s.PID())
				fill(b, s.Addr, n)
				st := ctlCache(b, s)
				rss1 := vmRSS(b, s.PID())
				b.ReportMetric(float64(st.Entries), "entries")
				b.ReportMetric(float64(rss0)/(1<<20), "rss-empty-MiB")
				b.ReportMetric(float64(rss1)/(1<<20), "rss-full-MiB")
				b.ReportMetric(float64(rss1-rss0)/float64(max(st.Entries, 1)), "rss-B/entry")
				s.Stop()
			}
		})
	}
}

// fill asks n distinct names, 32 clients at a time, until each answered.
func fill(b *testing.B, addr netip.AddrPort, n int) {
	var wg sync.WaitGroup
	next := make(chan int, 1024)
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
	}()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 512)
			for i := range next {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("h%d.fill.example.", i), dns.TypeA)
				q, _ := m.Pack()
				for try := 0; try < 5; try++ {
					_, _ = c.Write(q)
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := c.Read(buf); err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
}

// vmRSS is pid's resident set in bytes.
func vmRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(rest, &kb)
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// A masters change does not flush the cache (SPEC "Cache"): leader.mesos,
// cached from the old master, is still answered from the cache (by the
// old master's record) after the masters changed, while the zk records,
// a local zone that is never cached, follow the change at once.
func TestCacheSurvivesMastersChange(t *testing.T) {
	port := mesosMasters(t)
	file := filepath.Join(t.TempDir(), "master_list")
	write := func(s string) {
		if err := os.WriteFile(file+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write(`["127.0.0.4"]`)
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"master_source":                   "master_list",
		"master_list_file":                file,
		"mesos_dns_port":                  port,
		"masters_refresh_interval_normal": "200ms",
	}})
	awaitZK(t, s, "127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4", 5*time.Second)
	if ip := leaderMesos(t, s); ip != "127.0.0.4" {
		t.Fatalf("leader.mesos answered by %q, want the only master", ip)
	}
	write(`["127.0.0.2"]`)
	awaitZK(t, s, "127.0.0.2 127.0.0.2 127.0.0.2 127.0.0.2 127.0.0.2", 5*time.Second)
	if ip := leaderMesos(t, s); ip != "127.0.0.4" {
		t.Errorf("leader.mesos after a masters change: %q, want the cached 127.0.0.4 (TTL 60 s)", ip)
	}
	if st := ctlCache(t, s); st.Hits != 1 {
		t.Errorf("stats %+v: want the second leader.mesos a hit", st)
	}
}

// retransmits is the daemon's count of retransmitted upstream queries
// (spartan_race_extra_attempts_total{reason="retransmit"}), from /metrics.
func retransmits(t *testing.T, s *harness.Spartan) int {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	const metric = `spartan_race_extra_attempts_total{reason="retransmit"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, metric); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s%s: %v", metric, v, err)
			}
			return n
		}
	}
	t.Fatalf("/metrics lacks %s", metric)
	return 0
}
