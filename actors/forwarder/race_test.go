package forwarder_test

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// setup returns a forwarder whose default route is ups, with the given
// upstream timeout, plus the config actor that owns health.
func setup(t *testing.T, timeout time.Duration, ups ...*dnstest.Upstream) (*forwarder.Forwarder, *state.Actor, *state.Store) {
	t.Helper()
	cfg := config.Default()
	cfg.UpstreamTimeout = timeout
	cfg.Cache.Enabled = false // every query must reach the upstreams: the race is what these tests count
	for _, u := range ups {
		cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, u.Addr)
	}
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	f := forwarder.New(store, zerolog.Nop())
	f.LoserGrace = 200 * time.Millisecond
	return f, state.NewActor(store, reg, nil, time.Hour, clock.Real{}, zerolog.Nop()), store
}

func query(t *testing.T, name string, qtype uint16) (*dns.Msg, []byte) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

func unpack(t *testing.T, b []byte) *dns.Msg {
	t.Helper()
	if b == nil {
		t.Fatal("no reply")
	}
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return &m
}

// waitFor waits up to 2 s for cond (a loser is read in its own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, 2*time.Second, cond)
}

func TestDualDispatch(t *testing.T) { bothEngines(t, testDualDispatch) }

func testDualDispatch(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.1.1"))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.1.1"))
	f, _, _ := setup(t, 2*time.Second, a, b)
	ids := newIDRand(f) // fixed distinct IDs: no chance collision with the client's
	q, qb := query(t, "dual.example.", dns.TypeA)
	r := unpack(t, handle(t, f, qb))
	if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("reply %v", r)
	}
	waitFor(t, "both upstreams to see the query", func() bool { return a.Count() == 1 && b.Count() == 1 })
	// Fresh random IDs per upstream query (RFC 5452), never the client's.
	if ida, idb := a.Seen()[0].ID, b.Seen()[0].ID; ida == q.Id || idb == q.Id {
		t.Errorf("upstreams saw the client's ID %d", q.Id)
	}
	if ida, idb := a.Seen()[0].ID, b.Seen()[0].ID; ida == idb || !ids.issued(ida) || !ids.issued(idb) {
		t.Errorf("upstream IDs %#x %#x: want two distinct IDs drawn from Rand", ida, idb)
	}
}

func TestOneSilentUpstreamOfTwo(t *testing.T) { bothEngines(t, testOneSilentUpstreamOfTwo) }

func testOneSilentUpstreamOfTwo(t *testing.T, handle handleFunc) {
	silent := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	good := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.2.2"))
	f, _, _ := setup(t, 5*time.Second, silent, good)
	start := time.Now()
	for range 50 {
		_, qb := query(t, "one-silent.example.", dns.TypeA)
		if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("rcode %d", r.Rcode)
		}
	}
	// Each query is answered by the live upstream without waiting for the
	// silent one: 50 queries take far less than one upstream_timeout.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("50 queries took %v: something waited for the silent upstream", d)
	}
	// Both are always raced: the silent one gets every query too (it may
	// count the last one just after the answer came back).
	waitFor(t, "the silent upstream to see all 50 queries", func() bool { return silent.Count() == 50 })
}

func TestAllSilentServFail(t *testing.T) { bothEngines(t, testAllSilentServFail) }

func testAllSilentServFail(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	b := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	f, _, _ := setup(t, 300*time.Millisecond, a, b)
	q, qb := query(t, "silent.example.", dns.TypeA)
	start := time.Now()
	r := unpack(t, handle(t, f, qb))
	// At upstream_timeout, not long after it (the bound leaves room for a
	// loaded machine, but not for a second timeout).
	if d := time.Since(start); d < 300*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("SERVFAIL after %v, want it at upstream_timeout (300ms)", d)
	}
	if r.Rcode != dns.RcodeServerFailure || r.Id != q.Id || !r.Response || len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		t.Fatalf("want SERVFAIL echoing the question, got %v", r)
	}
}

func TestRefusedDoesNotWinWhileAnotherIsOut(t *testing.T) {
	bothEngines(t, testRefusedDoesNotWinWhileAnotherIsOut)
}

func testRefusedDoesNotWinWhileAnotherIsOut(t *testing.T, handle handleFunc) {
	refuser := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeRefused))
	slow := dnstest.Start(t, "127.0.0.1", dnstest.Slow(100*time.Millisecond, dnstest.Answer("10.3.3.3")))
	f, _, _ := setup(t, 2*time.Second, refuser, slow)
	_, qb := query(t, "refused.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("want the slow NOERROR, got %v", r)
	}
}

func TestUpstreamErrorReturnedWhenNothingBetter(t *testing.T) {
	bothEngines(t, testUpstreamErrorReturnedWhenNothingBetter)
}

func testUpstreamErrorReturnedWhenNothingBetter(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeRefused))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	f, _, _ := setup(t, 300*time.Millisecond, a, b)
	_, qb := query(t, "refused2.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeRefused {
		t.Fatalf("want the upstream's own REFUSED, got %v", r)
	}
}

func TestFastFailuresTryNextHealthiest(t *testing.T) {
	bothEngines(t, testFastFailuresTryNextHealthiest)
}

func testFastFailuresTryNextHealthiest(t *testing.T, handle handleFunc) {
	r1 := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeServerFailure))
	r2 := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeRefused))
	g1 := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.4.4.4"))
	g2 := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.4.4.4"))
	f, actor, store := setup(t, 2*time.Second, r1, r2, g1, g2)
	f.Hedge = time.Hour // only the fast-failure rule may start more upstreams
	// Make the good ones look worse so the failing ones are chosen first.
	for _, u := range store.Load().Default.Upstreams[2:] {
		u.Failures.Add(2)
	}
	actor.UpdateHealth()
	_, qb := query(t, "next.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("want NOERROR from the next healthiest, got %v", r)
	}
	if r1.Count() != 1 || r2.Count() != 1 || g1.Count()+g2.Count() < 1 {
		t.Errorf("queries seen: %d %d %d %d", r1.Count(), r2.Count(), g1.Count(), g2.Count())
	}
	rs := &f.Stats.Race
	if rs.Escalations.Load() != 2 || rs.EscalationWins.Load() != 1 || rs.Hedges.Load() != 0 || rs.HedgeWins.Load() != 0 {
		t.Errorf("race stats: escalations %d (won %d), hedges %d (won %d); want 2 (1), 0 (0)",
			rs.Escalations.Load(), rs.EscalationWins.Load(), rs.Hedges.Load(), rs.HedgeWins.Load())
	}
}

func TestHedgeWhenChosenUpstreamsAreSilent(t *testing.T) {
	bothEngines(t, testHedgeWhenChosenUpstreamsAreSilent)
}

func testHedgeWhenChosenUpstreamsAreSilent(t *testing.T, handle handleFunc) {
	s1 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	s2 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	good := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.5.5.5"))
	f, actor, store := setup(t, 5*time.Second, s1, s2, good)
	store.Load().Default.Upstreams[2].Failures.Add(1) // chosen last
	actor.UpdateHealth()
	_, qb := query(t, "hedge.example.", dns.TypeA)
	start := time.Now()
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %d", r.Rcode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %v: the hedge did not start the third upstream", d)
	}
	if rs := &f.Stats.Race; rs.Hedges.Load() != 1 || rs.HedgeWins.Load() != 1 || rs.Escalations.Load() != 0 {
		t.Errorf("race stats: hedges %d (won %d), escalations %d; want 1 (1), 0",
			rs.Hedges.Load(), rs.HedgeWins.Load(), rs.Escalations.Load())
	}
	// The silent ones counted a stall each, so health now avoids them.
	waitFor(t, "stalls", func() bool {
		ups := store.Load().Default.Upstreams
		return ups[0].Stalls.Load() == 1 && ups[1].Stalls.Load() == 1
	})
	actor.UpdateHealth()
	ups := store.Load().Default.Upstreams
	if !(ups[0].Rank() >= 1 && ups[1].Rank() >= 1) {
		t.Errorf("ranks after stalls: %d %d %d", ups[0].Rank(), ups[1].Rank(), ups[2].Rank())
	}
}

func TestSpoofedRepliesIgnored(t *testing.T) { bothEngines(t, testSpoofedRepliesIgnored) }

func testSpoofedRepliesIgnored(t *testing.T, handle handleFunc) {
	wrongID := func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Id++
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: []byte{6, 6, 6, 6}})
		return dnstest.Reply{Msg: m}
	}
	wrongQ := func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Question[0].Name = "evil.example."
		return dnstest.Reply{Msg: m}
	}
	otherPort := func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("6.6.6.6")(q, tcp)
		r.FromOther = true
		return r
	}
	garbage := func(q *dns.Msg, tcp bool) dnstest.Reply {
		return dnstest.Reply{Raw: []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3}}
	}
	notQR := func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("6.6.6.6")(q, tcp)
		r.Msg.Response = false
		return r
	}
	for name, h := range map[string]dnstest.Handler{"wrong id": wrongID, "wrong question": wrongQ, "other port": otherPort, "garbage": garbage, "QR clear": notQR} {
		t.Run(name, func(t *testing.T) {
			spoofer := dnstest.Start(t, "127.0.0.1", h)
			honest := dnstest.Start(t, "127.0.0.1", dnstest.Slow(50*time.Millisecond, dnstest.Answer("10.6.6.6")))
			f, _, _ := setup(t, 2*time.Second, spoofer, honest)
			_, qb := query(t, "spoof.example.", dns.TypeA)
			r := unpack(t, handle(t, f, qb))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.6.6.6" {
				t.Fatalf("spoof won or honest lost: %v", r)
			}
		})
	}
}

func TestTruncatedPassedOnAndTCPGoesUpstreamOverTCP(t *testing.T) {
	bothEngines(t, testTruncatedPassedOnAndTCPGoesUpstreamOverTCP)
}

func testTruncatedPassedOnAndTCPGoesUpstreamOverTCP(t *testing.T, handle handleFunc) {
	h := func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("10.7.7.7")(q, tcp)
		if !tcp {
			r.Msg.Answer = nil
			r.Msg.Truncated = true
		}
		return r
	}
	up := dnstest.Start(t, "127.0.0.1", h)
	f, _, _ := setup(t, 2*time.Second, up)
	_, qb := query(t, "tc.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("UDP: want the TC reply passed on, got %v", r)
	}
	if r := unpack(t, f.Handle(qb, true)); r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("TCP: want the full answer, got %v", r)
	}
	seen := up.Seen()
	if len(seen) != 2 || seen[0].TCP || !seen[1].TCP {
		t.Fatalf("upstream saw %+v, want one UDP then one TCP query", seen)
	}
}

func TestTransparencyByteForByte(t *testing.T) { bothEngines(t, testTransparencyByteForByte) }

func testTransparencyByteForByte(t *testing.T, handle handleFunc) {
	var sent atomic.Pointer[[]byte]
	h := func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		m.AuthenticatedData, m.CheckingDisabled, m.Authoritative = true, true, true
		m.Answer = append(m.Answer, &dns.RFC3597{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: 65400, Class: dns.ClassINET, Ttl: 30}, Rdata: "0a000001"})
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		opt.SetDo()
		opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7369642d74657374"})
		m.Extra = append(m.Extra, opt)
		b, _ := m.Pack()
		sent.Store(&b)
		return dnstest.Reply{Raw: b}
	}
	up := dnstest.Start(t, "127.0.0.1", h)
	f, _, _ := setup(t, 2*time.Second, up)
	q := new(dns.Msg)
	q.SetQuestion("unknown.example.", 65400)
	q.SetEdns0(4096, true)
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	qb, _ := q.Pack()
	got := handle(t, f, qb)
	want := append([]byte(nil), *sent.Load()...)
	want[0], want[1] = qb[0], qb[1]
	if !bytes.Equal(got, want) {
		t.Fatalf("reply differs from the upstream's beyond the ID:\n got %x\nwant %x", got, want)
	}
	// The upstream saw the client's OPT (size, DO, NSID option) unchanged.
	var seen dns.Msg
	if err := seen.Unpack(up.Seen()[0].Packet); err != nil {
		t.Fatal(err)
	}
	opt := seen.IsEdns0()
	if opt == nil || opt.UDPSize() != 4096 || !opt.Do() || len(opt.Option) != 1 || opt.Option[0].Option() != dns.EDNS0NSID {
		t.Fatalf("upstream saw OPT %v", opt)
	}
}

func TestMesosWithoutMastersServFails(t *testing.T) { bothEngines(t, testMesosWithoutMastersServFails) }

func testMesosWithoutMastersServFails(t *testing.T, handle handleFunc) {
	f, _, _ := setup(t, time.Second)
	_, qb := query(t, "leader.mesos.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %d", r.Rcode)
	}
}

func TestMesosGoesToMastersAtMesosDNSPort(t *testing.T) {
	bothEngines(t, testMesosGoesToMastersAtMesosDNSPort)
}

func testMesosGoesToMastersAtMesosDNSPort(t *testing.T, handle handleFunc) {
	m := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.8.8.8"))
	f, actor, store := setup(t, time.Second)
	cfg := *store.Load().Config
	cfg.MesosDNSPort = int(m.Addr.Port())
	store.Publish(state.Build(&cfg, nil, state.NewRegistry()))
	actor.SetMasters("test", []netip.Addr{m.Addr.Addr()})
	_, qb := query(t, "leader.mesos.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("reply %v", r)
	}
	if m.Count() != 1 {
		t.Fatalf("master saw %d queries", m.Count())
	}
}

func TestBadQueries(t *testing.T) {
	f, _, _ := setup(t, time.Second)
	_, good := query(t, "x.example.", dns.TypeA)
	twoQ := new(dns.Msg)
	twoQ.Question = []dns.Question{{Name: "a.", Qtype: 1, Qclass: 1}, {Name: "b.", Qtype: 1, Qclass: 1}}
	twoQB, _ := twoQ.Pack()
	noQ := new(dns.Msg)
	noQB, _ := noQ.Pack()
	notify := new(dns.Msg)
	notify.SetNotify("example.")
	notifyB, _ := notify.Pack()
	resp := append([]byte(nil), good...)
	resp[2] |= 0x80

	tests := []struct {
		name  string
		pkt   []byte
		rcode int // -1: dropped
	}{
		{"short", good[:11], -1},
		{"QR set", resp, -1},
		{"two questions", twoQB, dns.RcodeFormatError},
		{"no question", noQB, dns.RcodeFormatError},
		{"notify opcode", notifyB, dns.RcodeNotImplemented},
		{"truncated question", good[:len(good)-2], dns.RcodeFormatError},
	}
	for _, tc := range tests {
		r := f.Handle(tc.pkt, false)
		if tc.rcode == -1 {
			if r != nil {
				t.Errorf("%s: answered, want dropped", tc.name)
			}
			continue
		}
		m := unpack(t, r)
		if m.Rcode != tc.rcode || !m.Response {
			t.Errorf("%s: rcode %d, want %d", tc.name, m.Rcode, tc.rcode)
		}
	}
}

func TestLocalZones(t *testing.T) {
	f, actor, _ := setup(t, time.Second)
	actor.SetMasters("test", []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  string // A/AAAA value of the single answer, "" for none
	}{
		{"ready.spartan.", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"READY.Spartan.", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"ns.spartan.", dns.TypeA, dns.RcodeSuccess, "198.51.100.1"},
		{"other.spartan.", dns.TypeA, dns.RcodeNameError, ""},
		{"ready.spartan.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"localhost.", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"localhost.", dns.TypeAAAA, dns.RcodeSuccess, "::1"},
		{"zk-1.zk.", dns.TypeA, dns.RcodeSuccess, "10.0.0.1"},
		{"zk-3.zk.", dns.TypeA, dns.RcodeSuccess, "10.0.0.3"},
		{"zk-4.zk.", dns.TypeA, dns.RcodeSuccess, "10.0.0.1"},
		{"zk-5.zk.", dns.TypeA, dns.RcodeSuccess, "10.0.0.2"},
		{"zk-6.zk.", dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, tc := range tests {
		_, qb := query(t, tc.name, tc.qtype)
		r := unpack(t, f.Handle(qb, false))
		if r.Rcode != tc.rcode || !r.Authoritative {
			t.Errorf("%s %d: rcode %d aa %v", tc.name, tc.qtype, r.Rcode, r.Authoritative)
			continue
		}
		got := ""
		if len(r.Answer) == 1 {
			switch rr := r.Answer[0].(type) {
			case *dns.A:
				got = rr.A.String()
			case *dns.AAAA:
				got = rr.AAAA.String()
			}
			if r.Answer[0].Header().Ttl != 5 {
				t.Errorf("%s: TTL %d", tc.name, r.Answer[0].Header().Ttl)
			}
		}
		if got != tc.want {
			t.Errorf("%s %d: answer %q, want %q", tc.name, tc.qtype, got, tc.want)
		}
		if tc.want == "" && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: want SOA in authority, got %v", tc.name, r.Ns)
		}
	}
	// No masters known: every zk name is NXDOMAIN.
	f2, _, _ := setup(t, time.Second)
	_, qb := query(t, "zk-1.zk.", dns.TypeA)
	if r := unpack(t, f2.Handle(qb, false)); r.Rcode != dns.RcodeNameError {
		t.Errorf("zk-1.zk without masters: rcode %d", r.Rcode)
	}
}

func TestRefusedPortsFailFast(t *testing.T) { bothEngines(t, testRefusedPortsFailFast) }

// Upstreams whose port is closed answer with ICMP port unreachable: the
// race must take that as a fast failure and move on at once, not wait for
// the hedge or the timeout.
func testRefusedPortsFailFast(t *testing.T, handle handleFunc) {
	closed1 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	closed2 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	good := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.8.8.8"))
	f, actor, store := setup(t, 5*time.Second, closed1, closed2, good)
	closed1.Close()
	closed2.Close()
	f.Hedge = time.Hour // only the fast-failure rule may start the third
	store.Load().Default.Upstreams[2].Failures.Add(2)
	actor.UpdateHealth()
	_, qb := query(t, "icmp.example.", dns.TypeA)
	start := time.Now()
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("want NOERROR from the live upstream, got %v", r)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("answered after %v: port unreachable was not a fast failure", d)
	}
	ups := store.Load().Default.Upstreams
	if ups[0].Failures.Load() != 1 || ups[1].Failures.Load() != 1 {
		t.Errorf("failures counted: %d %d, want 1 1", ups[0].Failures.Load(), ups[1].Failures.Load())
	}
}

func TestFreshPortPerUpstreamQuery(t *testing.T) { bothEngines(t, testFreshPortPerUpstreamQuery) }

// RFC 5452: every upstream query leaves from a fresh random port, also when
// the loop recycles its sockets: the two upstreams of one query never share
// a port, and ports do not repeat from query to query (beyond the odd
// coincidence of a random choice).
func testFreshPortPerUpstreamQuery(t *testing.T, handle handleFunc) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.9.9.9"))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.9.9.9"))
	f, _, _ := setup(t, 2*time.Second, a, b)
	const n = 40
	for range n {
		_, qb := query(t, "ports.example.", dns.TypeA)
		if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("rcode %d", r.Rcode)
		}
	}
	waitFor(t, "both upstreams to see every query", func() bool { return a.Count() == n && b.Count() == n })
	ports := map[uint16]bool{}
	for i := range n {
		pa, pb := a.Seen()[i].From.Port(), b.Seen()[i].From.Port()
		if pa == pb {
			t.Errorf("query %d: both upstream queries from port %d", i, pa)
		}
		ports[pa], ports[pb] = true, true
	}
	if len(ports) < 2*n*9/10 {
		t.Errorf("%d distinct source ports over %d upstream queries", len(ports), 2*n)
	}
}

func TestHedgeDelayFollowsRouteLatency(t *testing.T) {
	bothEngines(t, testHedgeDelayFollowsRouteLatency)
}

// A route whose upstreams are known to answer in well under a millisecond
// hedges after a few milliseconds, not after the ceiling: a query whose two
// chosen upstreams just died is answered by the third almost at once.
func testHedgeDelayFollowsRouteLatency(t *testing.T, handle handleFunc) {
	s1 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	s2 := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	good := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.5.5.6"))
	f, actor, store := setup(t, 5*time.Second, s1, s2, good)
	f.Hedge = 2 * time.Second // the ceiling, and the delay without an estimate
	route := store.Load().Default
	route.Upstreams[2].Failures.Add(1) // chosen last
	for range 50 {
		route.Upstreams[2].Latency.Observe(300 * time.Microsecond) // the replies so far
	}
	actor.UpdateHealth()
	if h := route.Hedge(); h <= 0 || h > 10*time.Millisecond {
		t.Fatalf("route hedge %v after fast replies", h)
	}
	_, qb := query(t, "hedge-fast.example.", dns.TypeA)
	start := time.Now()
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %d", r.Rcode)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("answered after %v: the hedge waited for the ceiling, not the route's delay", d)
	}
	if s1.Count() != 1 || s2.Count() != 1 || good.Count() != 1 {
		t.Errorf("queries seen: %d %d %d, want 1 each", s1.Count(), s2.Count(), good.Count())
	}
}

func TestLossOfEveryUpstreamQuery(t *testing.T) { bothEngines(t, testLossOfEveryUpstreamQuery) }

// dropFirst is an upstream that loses the first n queries it gets (as if
// the datagram, or its reply, were lost), then answers.
func dropFirst(n int, h dnstest.Handler) dnstest.Handler {
	var seen atomic.Int64
	return func(q *dns.Msg, tcp bool) dnstest.Reply {
		if seen.Add(1) <= int64(n) {
			return dnstest.Reply{Drop: true}
		}
		return h(q, tcp)
	}
}

// Both upstreams of a query lose its datagrams, and then its first
// retransmits: the client still gets its answer well within
// upstream_timeout, every retransmit is a new upstream query (a fresh ID
// from a fresh source port), and they stop once one is answered.
func testLossOfEveryUpstreamQuery(t *testing.T, handle handleFunc) {
	for _, tc := range []struct {
		name string
		lost []int // per upstream: its first datagrams lost
	}{
		{name: "one upstream, its first 3 lost", lost: []int{3}},
		{name: "two upstreams, the first 2 of each lost", lost: []int{2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ups []*dnstest.Upstream
			for _, n := range tc.lost {
				ups = append(ups, dnstest.Start(t, "127.0.0.1", dropFirst(n, dnstest.Answer("10.7.7.7"))))
			}
			f, _, _ := setup(t, 3*time.Second, ups...)
			f.Hedge = 10 * time.Millisecond
			_, qb := query(t, "lossy.example.", dns.TypeA)
			start := time.Now()
			r := unpack(t, handle(t, f, qb))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("want the answer despite the loss, got %v", r)
			}
			// Retries at 10, 30, 70, 150 ms: well before upstream_timeout.
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("answered after %v: waited for upstream_timeout", d)
			}
			total, answered := 0, false
			ids, ports := map[uint16]bool{}, map[netip.AddrPort]bool{}
			for i, u := range ups {
				seen := u.Seen()
				answered = answered || len(seen) > tc.lost[i]
				for _, s := range seen {
					if ids[s.ID] || ports[s.From] {
						t.Errorf("upstream query %d reuses ID %d or source %v", total, s.ID, s.From)
					}
					ids[s.ID], ports[s.From] = true, true
					total++
				}
			}
			if !answered || total > len(tc.lost)+forwarder.MaxRetransmits {
				t.Errorf("%d upstream queries (at most %d), none past its losses: %v", total, len(tc.lost)+forwarder.MaxRetransmits, !answered)
			}
		})
	}
}
