package forwarder_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
)

// Cache tests: a real upstream (test/dnstest), both engines, and the
// cache on a hand-driven clock, so that "60 s later" is a step, not a wait.

// manualClock is the cache's clock in tests.
type manualClock struct{ ns atomic.Int64 }

func (c *manualClock) now() int64              { return c.ns.Load() }
func (c *manualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// cached returns a forwarder with the cache on (cfg tweaked by tune) on a
// manual clock, its default route ups.
func cached(t *testing.T, tune func(*config.Config), ups ...*dnstest.Upstream) (*forwarder.Forwarder, *manualClock) {
	t.Helper()
	cfg := config.Default()
	cfg.UpstreamTimeout = 500 * time.Millisecond
	for _, u := range ups {
		cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, u.Addr)
	}
	if tune != nil {
		tune(cfg)
	}
	f := forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())
	f.LoserGrace = 100 * time.Millisecond
	clk := &manualClock{}
	clk.ns.Store(int64(time.Hour)) // any origin
	f.NewCacheOn(clk.now)
	return f, clk
}

// zoneReply answers name with records whose TTLs the test chooses: an A
// (ttl), an NS in authority (ttl+100) and its glue in additional (ttl+200),
// with the query's EDNS echoed (plus an NSID option) when it has one.
func zoneReply(ttl uint32) dnstest.Handler {
	return func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Compress = true
		m.RecursionAvailable = true
		name := q.Question[0].Name
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IPv4(10, 1, 2, 3)}}
		m.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl + 100}, Ns: "ns1." + name}}
		m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "ns1." + name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl + 200}, A: net.IPv4(10, 0, 0, 53)}}
		if o := q.IsEdns0(); o != nil {
			r := new(dns.OPT)
			r.Hdr.Name, r.Hdr.Rrtype = ".", dns.TypeOPT
			r.SetUDPSize(1232)
			r.Option = append(r.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7331"})
			for _, opt := range o.Option {
				if c, ok := opt.(*dns.EDNS0_COOKIE); ok { // a server cookie for this client
					r.Option = append(r.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: c.Cookie + "0102030405060708"})
				}
			}
			m.Extra = append(m.Extra, r)
		}
		return dnstest.Reply{Msg: m}
	}
}

// ednsQuery is a query for name (its case as given) with EDNS and, if
// cookie is set, a client cookie.
func ednsQuery(t *testing.T, name string, id uint16, cookie string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	m.SetEdns0(1232, false)
	if cookie != "" {
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	}
	return dnstest.Pack(t, m)
}

// ede returns the INFO-CODEs of the reply's EDE options.
func ede(m *dns.Msg) []uint16 {
	var codes []uint16
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				codes = append(codes, e.InfoCode)
			}
		}
	}
	return codes
}

// A hit is the upstream's reply byte for byte but for the ID, the question
// name's case (the client's), TTLs decreased by the whole seconds spent in
// the cache, and no COOKIE option; no upstream query.
func TestCacheHitBytes(t *testing.T) { bothEngines(t, testCacheHitBytes) }

func testCacheHitBytes(t *testing.T, handle handleFunc) {
	up := dnstest.Start(t, "127.0.0.1", zoneReply(60))
	f, clk := cached(t, nil, up)
	first := handle(t, f, ednsQuery(t, "www.example.com.", 0x1111, ""))
	if up.Count() != 1 {
		t.Fatalf("upstream saw %d queries for the first lookup, want 1", up.Count())
	}
	clk.advance(7900 * time.Millisecond) // 7 whole seconds
	got := handle(t, f, ednsQuery(t, "wWw.ExAmple.COM.", 0x2222, "0011223344556677"))
	if up.Count() != 1 {
		t.Fatalf("upstream saw %d queries, want 1: the second lookup must be a hit", up.Count())
	}
	if len(got) != len(first) {
		t.Fatalf("hit is %d bytes, upstream reply %d", len(got), len(first))
	}
	// Undo exactly the allowed differences and the bytes must be equal.
	m := unpack(t, got)
	if m.Id != 0x2222 || m.Question[0].Name != "wWw.ExAmple.COM." {
		t.Errorf("hit ID %#x, question %q: want the client's 0x2222, wWw.ExAmple.COM.", m.Id, m.Question[0].Name)
	}
	ref := unpack(t, first)
	for i, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		want := append(append(ref.Answer, ref.Ns...), ref.Extra...)[i].Header().Ttl - 7
		if rr.Header().Ttl != want {
			t.Errorf("record %d TTL %d, want %d (7 s in the cache)", i, rr.Header().Ttl, want)
		}
		rr.Header().Ttl += 7
	}
	// Names compressed to the question follow the client's case: undo it.
	m.Id = ref.Id
	m.Question[0].Name = strings.ToLower(m.Question[0].Name)
	for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		if ns, ok := rr.(*dns.NS); ok {
			ns.Ns = strings.ToLower(ns.Ns)
		}
	}
	m.Compress = true
	back, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, first) {
		t.Errorf("hit differs from the upstream reply beyond ID, case and TTLs:\n hit %x\n up  %x", back, first)
	}
	if len(ede(m)) != 0 {
		t.Errorf("fresh hit carries EDE %v", ede(m))
	}

	// The upstream's reply to a client with a cookie carries its server
	// cookie; served to another client from the cache it must carry none.
	withCookie := handle(t, f, ednsQuery(t, "cookie.example.com.", 1, "aabbccddeeff0011"))
	if o := unpack(t, withCookie).IsEdns0(); o == nil || len(o.Option) != 2 {
		t.Fatalf("upstream reply options: %v, want NSID and COOKIE", o)
	}
	hit := unpack(t, handle(t, f, ednsQuery(t, "cookie.example.com.", 2, "99aabbccddeeff00")))
	o := hit.IsEdns0()
	if o == nil || len(o.Option) != 1 || o.Option[0].Option() != dns.EDNS0NSID {
		t.Errorf("cached answer's options %v, want NSID alone (COOKIE removed)", o)
	}
	if up.Count() != 2 {
		t.Errorf("upstream saw %d queries, want 2", up.Count())
	}
}

// The key tells apart what an upstream would answer differently: type, RD,
// DO, payload size, EDNS or not; and nothing else (case, ID, cookie).
func TestCacheKey(t *testing.T) { bothEngines(t, testCacheKey) }

func testCacheKey(t *testing.T, handle handleFunc) {
	up := dnstest.Start(t, "127.0.0.1", zoneReply(60))
	f, _ := cached(t, nil, up)
	variant := func(mod func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("key.example.", dns.TypeA)
		mod(m)
		return dnstest.Pack(t, m)
	}
	tests := []struct {
		name  string
		q     []byte
		count int // upstream queries so far
	}{
		{"plain", variant(func(*dns.Msg) {}), 1},
		{"same again, other ID and case", variant(func(m *dns.Msg) { m.Id = 7; m.Question[0].Name = "KEY.example." }), 1},
		{"other type", variant(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }), 2},
		{"no RD", variant(func(m *dns.Msg) { m.RecursionDesired = false }), 3},
		{"CD", variant(func(m *dns.Msg) { m.CheckingDisabled = true }), 4},
		{"EDNS", variant(func(m *dns.Msg) { m.SetEdns0(1232, false) }), 5},
		{"EDNS with DO", variant(func(m *dns.Msg) { m.SetEdns0(1232, true) }), 6},
		{"EDNS other size", variant(func(m *dns.Msg) { m.SetEdns0(4096, false) }), 7},
		{"EDNS with a cookie", variant(func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		}), 7},
		{"EDNS with NSID", variant(func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_NSID{Code: dns.EDNS0NSID}}
		}), 8},
	}
	for _, tt := range tests {
		if r := handle(t, f, tt.q); r == nil {
			t.Fatalf("%s: no reply", tt.name)
		}
		if up.Count() != tt.count {
			t.Errorf("%s: upstream saw %d queries, want %d", tt.name, up.Count(), tt.count)
		}
	}
}

// Negative answers live as long as the SOA rule says (RFC 2308: the SOA's
// TTL or MINIMUM, whichever is smaller); without an SOA they are not cached.
func TestCacheNegative(t *testing.T) { bothEngines(t, testCacheNegative) }

func testCacheNegative(t *testing.T, handle handleFunc) {
	neg := func(rcode int, soa bool) dnstest.Handler {
		return func(q *dns.Msg, tcp bool) dnstest.Reply {
			m := new(dns.Msg)
			m.SetRcode(q, rcode)
			if soa {
				m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
					Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 2, Retry: 3, Expire: 4, Minttl: 20}}
			}
			return dnstest.Reply{Msg: m}
		}
	}
	tests := []struct {
		name     string
		h        dnstest.Handler
		cachedAt []time.Duration // clock steps (from the first query) at which a query is a hit
		missedAt []time.Duration // ... and at which it goes upstream
	}{
		{"NXDOMAIN with SOA", neg(dns.RcodeNameError, true), []time.Duration{19 * time.Second}, []time.Duration{21 * time.Second}},
		{"NODATA with SOA", neg(dns.RcodeSuccess, true), []time.Duration{19 * time.Second}, []time.Duration{21 * time.Second}},
		{"NXDOMAIN without SOA", neg(dns.RcodeNameError, false), nil, []time.Duration{0, time.Second}},
		{"NODATA without SOA", neg(dns.RcodeSuccess, false), nil, []time.Duration{0, time.Second}},
		{"SERVFAIL", dnstest.Rcode(dns.RcodeServerFailure), nil, []time.Duration{0, time.Second}},
		{"REFUSED", dnstest.Rcode(dns.RcodeRefused), nil, []time.Duration{0, time.Second}},
		{"TC", func(q *dns.Msg, tcp bool) dnstest.Reply {
			r := zoneReply(60)(q, tcp)
			r.Msg.Truncated = true
			return r
		}, nil, []time.Duration{0, time.Second}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := dnstest.Start(t, "127.0.0.1", tt.h)
			f, clk := cached(t, func(c *config.Config) { c.Cache.ServeStale, c.Cache.Prefetch = false, false }, up)
			q := ednsQuery(t, fmt.Sprintf("n%d.example.", i), 1, "")
			handle(t, f, q)
			start := clk.now()
			at := func(d time.Duration) { clk.ns.Store(start + int64(d)) }
			for _, d := range tt.cachedAt {
				at(d)
				before := up.Count()
				m := unpack(t, handle(t, f, q))
				if up.Count() != before {
					t.Errorf("at +%v: went upstream, want a hit (%+v)", d, f.Cache.Stats())
				}
				if len(m.Ns) > 0 && m.Ns[0].Header().Ttl != 300-uint32(d/time.Second) {
					t.Errorf("at +%v: SOA TTL %d, want %d", d, m.Ns[0].Header().Ttl, 300-uint32(d/time.Second))
				}
			}
			for _, d := range tt.missedAt {
				at(d)
				before := up.Count()
				handle(t, f, q)
				if up.Count() != before+1 {
					t.Errorf("at +%v: upstream saw %d more queries, want 1 (not cached, or expired)", d, up.Count()-before)
				}
			}
		})
	}
}

// switchable is an upstream handler the test changes at run time.
func setHandler(up *dnstest.Upstream, h dnstest.Handler) { up.SetHandler(h) }

// Expired entries: refresh first (fresh whenever the upstream answers);
// the stale answer (stale TTL, EDE 3) once the refresh fails or its wait
// runs out, and at once for stale_recheck after a failed refresh; nothing
// stale beyond stale_max_age.
func TestCacheStale(t *testing.T) { bothEngines(t, testCacheStale) }

func testCacheStale(t *testing.T, handle handleFunc) {
	up := dnstest.Start(t, "127.0.0.1", zoneReply(60))
	f, clk := cached(t, func(c *config.Config) {
		c.Cache.Prefetch = false
		c.Cache.StaleMaxAge = time.Hour
		c.Cache.StaleRecheck = 30 * time.Second
		c.UpstreamTimeout = 1500 * time.Millisecond
	}, up)
	// The refresh wait is 2 x hedge: 300 ms, so that a live upstream on a
	// loaded machine answers well within it (the fresh-answer steps), and
	// still far from upstream_timeout (the silent step).
	f.Hedge = 150 * time.Millisecond
	q := ednsQuery(t, "stale.example.", 1, "")
	handle(t, f, q)

	// Expired, upstream alive: a fresh answer, not a stale one.
	clk.advance(61 * time.Second)
	m := unpack(t, handle(t, f, q))
	if up.Count() != 2 || m.Answer[0].Header().Ttl != 60 || len(ede(m)) != 0 {
		t.Fatalf("expired entry, live upstream: %d upstream queries, TTL %d, EDE %v; want a refresh: 2, 60, none",
			up.Count(), m.Answer[0].Header().Ttl, ede(m))
	}

	// Expired, upstream silent: stale once the wait (2 x hedge) is over,
	// long before upstream_timeout (1.5 s) or client_timeout (1.8 s).
	setHandler(up, dnstest.Silent())
	clk.advance(61 * time.Second)
	start := time.Now()
	m = unpack(t, handle(t, f, q))
	took := time.Since(start)
	checkStale(t, "silent upstream", m)
	if took >= 1200*time.Millisecond {
		t.Errorf("stale answer after %v: it must come after the wait (300 ms), not the upstream timeout", took)
	}
	// While that refresh is still out, past its wait: stale at once, no
	// second refresh. (The refresh itself retransmits to the silent
	// upstream: those are counted apart, refreshes are what is left.)
	refreshes := func() int { return up.Count() - int(f.Stats.Race.Retransmits.Load()) }
	before := refreshes()
	checkStale(t, "refresh in flight", unpack(t, handle(t, f, q)))
	// Once it has failed (upstream_timeout), stale at once with no
	// refresh until stale_recheck is over.
	waitFor(t, "the refresh to fail", func() bool { return f.Refreshing() == 0 })
	if refreshes() != before {
		t.Errorf("a second refresh started while one was in flight")
	}
	before = up.Count()
	clk.advance(10 * time.Second)
	checkStale(t, "within stale_recheck", unpack(t, handle(t, f, q)))
	if up.Count() != before {
		t.Errorf("refresh within stale_recheck: upstream saw %d more", up.Count()-before)
	}

	// The upstream refuses: a refresh that fails fast gives stale at once.
	setHandler(up, dnstest.Rcode(dns.RcodeRefused))
	clk.advance(21 * time.Second) // stale_recheck over
	checkStale(t, "refused refresh", unpack(t, handle(t, f, q)))
	if up.Count() != before+1 {
		t.Errorf("after stale_recheck: upstream saw %d more queries, want one refresh", up.Count()-before)
	}

	// Recovery: fresh again after the next stale_recheck.
	setHandler(up, zoneReply(60))
	clk.advance(31 * time.Second)
	m = unpack(t, handle(t, f, q))
	if m.Answer[0].Header().Ttl != 60 || len(ede(m)) != 0 {
		t.Errorf("after recovery: TTL %d, EDE %v; want a fresh answer", m.Answer[0].Header().Ttl, ede(m))
	}

	// Beyond stale_max_age: no stale answer, the upstream's refusal.
	setHandler(up, dnstest.Rcode(dns.RcodeRefused))
	clk.advance(61*time.Second + time.Hour)
	if m = unpack(t, handle(t, f, q)); m.Rcode != dns.RcodeRefused {
		t.Errorf("past stale_max_age: rcode %s, want the upstream's REFUSED", dns.RcodeToString[m.Rcode])
	}
	if s := f.Cache.Stats(); s.Stale != 4 {
		t.Errorf("stale answers counted: %d, want 4", s.Stale)
	}
}

func checkStale(t *testing.T, what string, m *dns.Msg) {
	t.Helper()
	if len(m.Answer) != 1 || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s: %s, want the stale answer", what, m)
	}
	for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
		if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != 30 {
			t.Errorf("%s: %s TTL %d, want stale_answer_ttl 30", what, rr.Header().Name, rr.Header().Ttl)
		}
	}
	if e := ede(m); len(e) != 1 || e[0] != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("%s: EDE %v, want [3] (Stale Answer)", what, e)
	}
}

// Identical misses while a race is in flight wait for it: one upstream
// query for 50 clients, each answered with its own ID and case, and none
// of the waiters holds a handler_limit slot.
func TestCacheCoalescing(t *testing.T) { bothEngines(t, testCacheCoalescing) }

func testCacheCoalescing(t *testing.T, handle handleFunc) {
	release := make(chan struct{})
	up := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		<-release // hold the race open until every client has asked
		return zoneReply(60)(q, tcp)
	})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before the upstream's own cleanup: a failing test must not hang in it
	// handler_limit 4: waiters hold no slot, so 50 of them fit.
	f, _ := cached(t, func(c *config.Config) { c.UpstreamTimeout, c.HandlerLimit = 5*time.Second, 4 }, up)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []byte("coalesce.example.")
			if i&1 == 1 {
				name[0], name[2] = 'C', 'A'
			}
			id := uint16(1000 + i)
			m := new(dns.Msg)
			m.SetQuestion(string(name), dns.TypeA)
			m.Id = id
			r := handle(t, f, dnstest.Pack(t, m))
			if r == nil {
				errs <- fmt.Sprintf("client %d: no reply", i)
				return
			}
			got := unpack(t, r)
			if got.Id != id || got.Question[0].Name != string(name) || len(got.Answer) != 1 {
				errs <- fmt.Sprintf("client %d: ID %d question %q answers %d; want %d %q 1", i, got.Id, got.Question[0].Name, len(got.Answer), id, name)
			}
		}()
	}
	waitFor(t, "49 waiters", func() bool { return f.Cache.Stats().Coalesced == n-1 })
	open()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if up.Count() != 1 {
		t.Errorf("upstream saw %d queries for %d identical misses, want 1", up.Count(), n)
	}
}

// Prefetch: a name in steady use never misses. Over five lifetimes of a
// 20 s entry, a query every second: one miss (the first), one prefetch per
// lifetime.
func TestCachePrefetch(t *testing.T) { bothEngines(t, testCachePrefetch) }

func testCachePrefetch(t *testing.T, handle handleFunc) {
	up := dnstest.Start(t, "127.0.0.1", zoneReply(20))
	f, clk := cached(t, nil, up)
	q := ednsQuery(t, "prefetch.example.", 1, "")
	for i := range 100 {
		m := unpack(t, handle(t, f, q))
		if len(m.Answer) != 1 || len(ede(m)) != 0 {
			t.Fatalf("query %d: %v", i, m)
		}
		// A prefetch started by this query lands before the next one.
		waitFor(t, "prefetches to end", func() bool { return f.Refreshing() == 0 })
		clk.advance(time.Second)
	}
	s := f.Cache.Stats()
	if s.Misses != 1 || s.Prefetches < 5 || s.Stale != 0 {
		t.Errorf("100 queries over 5 lifetimes: %+v; want 1 miss, >= 5 prefetches, no stale", s)
	}
	if up.Count() != 1+int(s.Prefetches) {
		t.Errorf("upstream saw %d queries, want 1 + %d prefetches", up.Count(), s.Prefetches)
	}
}

// A reply larger than the client's transport allows is never served from
// the cache: an upstream that ignores the 512-byte limit of a query
// without EDNS reaches that client (as without a cache), but the next
// such query goes upstream again.
func TestCacheSizeLimit(t *testing.T) { bothEngines(t, testCacheSizeLimit) }

func testCacheSizeLimit(t *testing.T, handle handleFunc) {
	up := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		for i := range 40 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 0, 0, byte(i))})
		}
		return dnstest.Reply{Msg: m}
	})
	f, _ := cached(t, nil, up)
	m := new(dns.Msg)
	m.SetQuestion("big.example.", dns.TypeA)
	q := dnstest.Pack(t, m)
	for i := range 2 {
		if r := handle(t, f, q); len(r) <= 512 {
			t.Fatalf("query %d: %d bytes, want the upstream's oversized reply", i, len(r))
		}
	}
	if up.Count() != 2 {
		t.Errorf("upstream saw %d queries, want 2: an entry beyond 512 bytes is not for a client without EDNS", up.Count())
	}
}

// Goroutines and descriptors come back after the cache tests' races
// (prefetch and refresh goroutines end with their race).
func TestCacheNoLeak(t *testing.T) {
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	up := dnstest.Start(t, "127.0.0.1", zoneReply(20))
	f, clk := cached(t, nil, up)
	runtime.GC()
	g0, fd0 := runtime.NumGoroutine(), fds()
	q := ednsQuery(t, "leak.example.", 1, "")
	for range 50 {
		f.Handle(q, false)
		clk.advance(time.Second) // misses, hits, prefetches, refreshes
	}
	setHandler(up, dnstest.Silent())
	clk.advance(time.Minute)
	f.Handle(q, false) // a stale answer; its refresh times out in the background
	waitFor(t, "goroutines and fds to come back", func() bool {
		return f.Refreshing() == 0 && runtime.NumGoroutine() <= g0 && fds() <= fd0
	})
}
