package forwarder_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
)

// The Dispatch rules at their edges: how many upstreams a query may start,
// when more are started, when the race gives up, and which replies fit the
// size limits. Both engines, through Handle and a real Loop.

// queriedOnce says how many queries u has received, exactly: it asks u
// itself first and waits for the answer. An upstream reads its socket in
// order, and the forwarder's sends to it (on loopback, delivered at once)
// all came before this probe, so once the probe is answered every query the
// forwarder sent it has been counted. The probe itself is not counted.
func queriedOnce(t *testing.T, u *dnstest.Upstream) int {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("probe.example.", dns.TypeA)
	m.Id = 0x7e57
	c := &dns.Client{Timeout: 2 * time.Second}
	if _, _, err := c.Exchange(m, u.Addr.String()); err != nil {
		t.Fatalf("probe of %s: %v", u.Addr, err)
	}
	return u.Count() - 1
}

// rankLast makes ups look unhealthy, so they are chosen after the others.
func rankLast(actor *state.Actor, ups ...*state.Upstream) {
	for _, u := range ups {
		u.Failures.Add(3)
	}
	actor.UpdateHealth()
}

func TestTwoUpstreamsStartedNoMore(t *testing.T) { bothEngines(t, testTwoUpstreamsStartedNoMore) }

// Two upstreams start; with no failure and no hedge nothing else does, and
// nothing stalls.
func testTwoUpstreamsStartedNoMore(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.1.1"))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.1.1"))
	c := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.1.1"))
	d := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.1.1"))
	f, actor, store := setup(t, 2*time.Second, a, b, c, d)
	f.Hedge = time.Hour // no hedge may start a third
	ups := store.Load().Default.Upstreams
	rankLast(actor, ups[2], ups[3])
	_, qb := query(t, "two.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("reply %v", r)
	}
	if n := queriedOnce(t, c) + queriedOnce(t, d); n != 0 {
		t.Errorf("%d queries went to the third and fourth upstreams, want none", n)
	}
	waitFor(t, "both replies booked", func() bool { return ups[0].Successes.Load()+ups[1].Successes.Load() == 2 })
	for i, u := range ups[:2] {
		if s := u.Stalls.Load(); s != 0 {
			t.Errorf("upstream %d counted %d stalls with an hour's hedge delay", i, s)
		}
	}
}

func TestOneFastFailureWaitsForTheOther(t *testing.T) {
	bothEngines(t, testOneFastFailureWaitsForTheOther)
}

// The next two start only when every started upstream has failed fast: one
// REFUSED while the other is still out starts nothing.
func testOneFastFailureWaitsForTheOther(t *testing.T, handle handleFunc) {
	refuser := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeRefused))
	slow := dnstest.Start(t, "127.0.0.1", dnstest.Slow(100*time.Millisecond, dnstest.Answer("10.2.2.2")))
	c := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.2.3"))
	d := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.2.3"))
	f, actor, store := setup(t, 2*time.Second, refuser, slow, c, d)
	f.Hedge = time.Hour
	ups := store.Load().Default.Upstreams
	rankLast(actor, ups[2], ups[3])
	_, qb := query(t, "onefails.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "10.2.2.2" {
		t.Fatalf("want the slow upstream's answer, got %v", r)
	}
	if n := queriedOnce(t, c) + queriedOnce(t, d); n != 0 {
		t.Errorf("%d queries went to the next upstreams while one was still out", n)
	}
}

func TestAtMostFourUpstreams(t *testing.T) { bothEngines(t, testAtMostFourUpstreams) }

// A query uses at most four upstreams (two, then the next two), however
// many the route has and however they fail.
func testAtMostFourUpstreams(t *testing.T, handle handleFunc) {
	var refusers []*dnstest.Upstream
	for range 6 {
		refusers = append(refusers, dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeRefused)))
	}
	f, _, _ := setup(t, 2*time.Second, refusers...)
	f.Hedge = time.Hour
	_, qb := query(t, "six.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeRefused {
		t.Fatalf("want an upstream's REFUSED, got %v", r)
	}
	n := 0
	for _, u := range refusers {
		n += queriedOnce(t, u)
	}
	if n != 4 {
		t.Errorf("%d upstreams queried, want 4", n)
	}
}

func TestAllRefusedAnswersAtOnce(t *testing.T) { bothEngines(t, testAllRefusedAnswersAtOnce) }

// When every upstream that could be started has failed fast (closed ports:
// ICMP unreachable), the client gets SERVFAIL then, not at upstream_timeout.
func testAllRefusedAnswersAtOnce(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	b := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	a.Close()
	b.Close()
	f, _, store := setup(t, 4*time.Second, a, b)
	f.Hedge = time.Hour
	_, qb := query(t, "closed.example.", dns.TypeA)
	start := time.Now()
	r := unpack(t, handle(t, f, qb))
	if d := time.Since(start); r.Rcode != dns.RcodeServerFailure || d > 2*time.Second {
		t.Fatalf("got %v after %v, want SERVFAIL at once (upstream_timeout is 4s)", r, d)
	}
	for i, u := range store.Load().Default.Upstreams {
		if n := u.Failures.Load(); n != 1 {
			t.Errorf("upstream %d: %d failures, want 1", i, n)
		}
	}
}

func TestTimeoutStallAccounting(t *testing.T) { bothEngines(t, testTimeoutStallAccounting) }

// Silent upstreams at upstream_timeout: one that already counted a stall
// (timeout after the hedge delay) keeps it and is not charged a failure
// too; one timed out before its stall is charged a failure. Either way the
// client gets SERVFAIL at upstream_timeout, also when that is not after the
// hedge delay.
func testTimeoutStallAccounting(t *testing.T, handle handleFunc) {
	tests := []struct {
		name             string
		timeout, hedge   time.Duration
		stalls, failures uint64
		either           bool // timer and deadline at the same instant: one of the two
	}{
		{"timeout after the hedge", 300 * time.Millisecond, 20 * time.Millisecond, 1, 0, false},
		{"timeout before the hedge", 200 * time.Millisecond, time.Hour, 0, 1, false},
		{"timeout at the hedge", 200 * time.Millisecond, 200 * time.Millisecond, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
			b := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
			f, _, store := setup(t, tc.timeout, a, b)
			f.Hedge = tc.hedge
			_, qb := query(t, "timeout.example.", dns.TypeA)
			start := time.Now()
			r := unpack(t, handle(t, f, qb))
			if d := time.Since(start); r.Rcode != dns.RcodeServerFailure || d > tc.timeout+time.Second {
				t.Fatalf("got %v after %v, want SERVFAIL at upstream_timeout (%v)", r, d, tc.timeout)
			}
			ups := store.Load().Default.Upstreams
			booked := func(u *state.Upstream) uint64 { return u.Stalls.Load() + u.Failures.Load() }
			waitFor(t, "the timeouts booked", func() bool { return booked(ups[0]) > 0 && booked(ups[1]) > 0 })
			// UDP retransmits (rules.go) may query a silent upstream more
			// than once: each query is scored, so counts are at least one,
			// but a timeout after a stall must never be charged a failure
			// too, and one before the hedge never counts a stall.
			for i, u := range ups {
				s, fl := u.Stalls.Load(), u.Failures.Load()
				bad := false
				switch {
				case tc.either:
					bad = s+fl == 0
				case tc.stalls > 0:
					bad = s == 0 || fl != 0
				default:
					bad = s != 0 || fl == 0
				}
				if bad {
					t.Errorf("upstream %d: %d stalls, %d failures; want stalls %v, failures %v (either: %v)", i, s, fl, tc.stalls > 0, tc.failures > 0, tc.either)
				}
			}
		})
	}
}

func TestRepliesAtTheSizeLimit(t *testing.T) {
	bothEngines(t, func(t *testing.T, handle handleFunc) {
		testRepliesAtTheSizeLimit(t, func(f *forwarder.Forwarder, q []byte) []byte { return handle(t, f, q) }, false)
	})
	t.Run("tcp", func(t *testing.T) {
		testRepliesAtTheSizeLimit(t, func(f *forwarder.Forwarder, q []byte) []byte { return f.Handle(q, true) }, true)
	})
}

// udp_payload_max and tcp_message_max are the largest replies accepted: a
// reply of exactly that size is used, one byte more is not.
func testRepliesAtTheSizeLimit(t *testing.T, handle func(f *forwarder.Forwarder, q []byte) []byte, tcp bool) {
	build := func(q *dns.Msg) []byte {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 5}, Txt: []string{"0123456789abcdef0123456789abcdef"}})
		b, _ := m.Pack()
		return b
	}
	h := func(q *dns.Msg, _ bool) dnstest.Reply { return dnstest.Reply{Raw: build(q)} }
	probe := new(dns.Msg)
	probe.SetQuestion("size.example.", dns.TypeTXT)
	size := len(build(probe)) // the same for every ID
	for _, tc := range []struct {
		name  string
		slack int // the limit is the reply's size plus this
		ok    bool
	}{{"exactly the limit", 0, true}, {"one byte over", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			up := dnstest.Start(t, "127.0.0.1", h)
			f, _, store := setup(t, 300*time.Millisecond, up)
			_, qb := query(t, "size.example.", dns.TypeTXT)
			cfg := *store.Load().Config
			if tcp {
				cfg.Limits.TCPMessageMax = size + tc.slack
			} else {
				cfg.Limits.UDPPayloadMax = size + tc.slack
			}
			store.Publish(state.Build(&cfg, nil, state.NewRegistry()))
			r := unpack(t, handle(f, qb))
			if got := r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1; got != tc.ok {
				t.Fatalf("%d-byte reply with the limit at %d: %v", size, size+tc.slack, r)
			}
		})
	}
}

func TestHedgeDefaultsToTheCeiling(t *testing.T) {
	bothEngines(t, testHedgeDefaultsToTheCeiling)
}

// A route with no latency estimate yet hedges at the forwarder's ceiling,
// not at once: with an hour's ceiling, two slow upstreams are waited for
// and a third is never started.
func testHedgeDefaultsToTheCeiling(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Slow(100*time.Millisecond, dnstest.Answer("10.2.3.1")))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Slow(100*time.Millisecond, dnstest.Answer("10.2.3.1")))
	c := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.3.2"))
	f, actor, store := setup(t, 2*time.Second, a, b, c)
	f.Hedge = time.Hour
	ups := store.Load().Default.Upstreams
	rankLast(actor, ups[2])
	if h := store.Load().Default.Hedge(); h != 0 {
		t.Fatalf("premise: the route has an estimate (%v)", h)
	}
	_, qb := query(t, "ceiling.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "10.2.3.1" {
		t.Fatalf("want a slow upstream's answer, got %v", r)
	}
	if n := queriedOnce(t, c); n != 0 {
		t.Errorf("the third upstream was queried %d times: the hedge did not wait for the ceiling", n)
	}
}

// The spec's defaults: a 40 ms hedge ceiling (also the delay while a route
// has no estimate) and losers read for a second after the race.
func TestForwarderDefaults(t *testing.T) {
	cfg := config.Default()
	f := forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())
	if f.Hedge != 40*time.Millisecond || f.LoserGrace != time.Second {
		t.Fatalf("hedge %v, loser grace %v; want 40ms and 1s", f.Hedge, f.LoserGrace)
	}
}

// handler_limit bounds the queries in flight: Begin refuses the one over
// it (and counts it shed), End gives the slot back.
func TestBeginEndHandlerLimit(t *testing.T) {
	cfg := config.Default()
	cfg.HandlerLimit = 2
	f := forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())
	steps := []struct {
		begin    bool // Begin (else End)
		want     bool // what Begin returns
		inflight int64
		shed     uint64
	}{
		{true, true, 1, 0},
		{true, true, 2, 0},
		{true, false, 2, 1},
		{false, false, 1, 1},
		{true, true, 2, 1},
		{true, false, 2, 2},
	}
	for i, s := range steps {
		if s.begin {
			if got := f.Begin() != nil; got != s.want {
				t.Fatalf("step %d: Begin = %v, want %v", i, got, s.want)
			}
		} else {
			f.End()
		}
		if f.InFlight() != s.inflight || f.Stats.Shed.Load() != s.shed {
			t.Fatalf("step %d: in flight %d, shed %d; want %d, %d", i, f.InFlight(), f.Stats.Shed.Load(), s.inflight, s.shed)
		}
	}
}

func TestConcurrentQueriesKeepTheirOwnAnswers(t *testing.T) {
	bothEngines(t, testConcurrentQueriesKeepTheirOwnAnswers)
}

// Queries in flight at once each get their own answer, also after earlier
// queries have ended and their state is reused.
func testConcurrentQueriesKeepTheirOwnAnswers(t *testing.T, handle handleFunc) {
	echo := func(q *dns.Msg, tcp bool) dnstest.Reply {
		// The answer names the question, so a mix-up shows.
		r := dnstest.Answer("10.2.4.1")(q, tcp)
		r.Delay = 50 * time.Millisecond
		return r
	}
	a := dnstest.Start(t, "127.0.0.1", echo)
	b := dnstest.Start(t, "127.0.0.1", echo)
	f, _, _ := setup(t, 2*time.Second, a, b)
	f.Hedge = time.Hour
	for round := range 3 {
		const n = 4
		got := make(chan string, n)
		for i := range n {
			name := "c" + string(rune('a'+round)) + string(rune('a'+i)) + ".example."
			go func() {
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				m.Id = uint16(0x3000 + 16*round + i)
				qb, _ := m.Pack()
				r := handle(t, f, qb)
				var rm dns.Msg
				if r == nil || rm.Unpack(r) != nil || rm.Id != m.Id || len(rm.Answer) != 1 || rm.Answer[0].Header().Name != name {
					got <- "bad reply to " + name
					return
				}
				got <- ""
			}()
		}
		for range n {
			if e := <-got; e != "" {
				t.Error(e)
			}
		}
	}
}

func TestLosersAfterAHedgeAllBooked(t *testing.T) { bothEngines(t, testLosersAfterAHedgeAllBooked) }

// A race won by the hedged third upstream still reads both losers to the
// end: the first loser's reply does not end the reading of the second.
func testLosersAfterAHedgeAllBooked(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Slow(100*time.Millisecond, dnstest.Answer("10.2.5.1")))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Slow(300*time.Millisecond, dnstest.Answer("10.2.5.1")))
	c := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.5.3"))
	f, actor, store := setup(t, 3*time.Second, a, b, c)
	f.Hedge = 20 * time.Millisecond
	f.LoserGrace = 3 * time.Second
	ups := store.Load().Default.Upstreams
	rankLast(actor, ups[2])
	_, qb := query(t, "hedged.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "10.2.5.3" {
		t.Fatalf("want the hedged upstream's answer, got %v", r)
	}
	waitFor(t, "both losers' replies booked", func() bool { return ups[0].Successes.Load() == 1 && ups[1].Successes.Load() == 1 })
}
