package forwarder_test

import (
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
)

// counters is what a test reads of one upstream's accounting after a race.
type counters struct {
	Successes, Failures, Stalls, LateReplies, Latencies uint64
}

func countersOf(u *state.Upstream) counters {
	_, n, _ := u.Latency.Snapshot()
	return counters{u.Successes.Load(), u.Failures.Load(), u.Stalls.Load(), u.LateReplies.Load(), n}
}

func TestNXDomainWinsAtOnce(t *testing.T) { bothEngines(t, testNXDomainWinsAtOnce) }

// NXDOMAIN is a good answer (spec, Dispatch): a fast NXDOMAIN wins the race
// outright, without waiting for a slower NOERROR, and neither upstream is
// charged a failure for it.
func testNXDomainWinsAtOnce(t *testing.T, handle handleFunc) {
	nx := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeNameError))
	slow := dnstest.Start(t, "127.0.0.1", dnstest.Slow(150*time.Millisecond, dnstest.Answer("10.1.3.1")))
	f, _, store := setup(t, 3*time.Second, nx, slow)
	f.LoserGrace = 3 * time.Second // the slow loser's reply is always read
	_, qb := query(t, "nx.example.", dns.TypeA)
	if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeNameError {
		t.Fatalf("want the fast NXDOMAIN, got %v", r)
	}
	ups := store.Load().Default.Upstreams
	waitFor(t, "the slow loser's reply to be booked", func() bool { return ups[1].Successes.Load() == 1 })
	if c := countersOf(ups[0]); c.Failures != 0 || c.Successes != 1 {
		t.Errorf("NXDOMAIN upstream booked %+v, want one success and no failure", c)
	}
	if c := countersOf(ups[1]); c.Failures != 0 {
		t.Errorf("slow NOERROR upstream booked %+v, want no failure", c)
	}
}

func TestLoserAccounting(t *testing.T) { bothEngines(t, testLoserAccounting) }

// The losers of a won race are still read, and what they answer is booked
// as if they had won: a late good reply is a success with its own latency
// (its stall at the hedge delay taken back), a late error reply a failure.
// Health depends on it: a merely slower upstream must not look broken.
func testLoserAccounting(t *testing.T, handle handleFunc) {
	const delay = 150 * time.Millisecond
	tests := []struct {
		name  string
		loser dnstest.Handler
		want  counters
	}{
		{"good reply", dnstest.Answer("10.1.3.2"), counters{Successes: 1, Stalls: 1, LateReplies: 1, Latencies: 1}},
		{"SERVFAIL", dnstest.Rcode(dns.RcodeServerFailure), counters{Failures: 1, Stalls: 1, LateReplies: 1}},
	}
	// Three rounds on one forwarder: the booking repeats, and by the last
	// round the engine has run for over 300 ms, so a latency measured from
	// anything but the attempt's own send is far off.
	const rounds = 3
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fast := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.3.1"))
			slow := dnstest.Start(t, "127.0.0.1", dnstest.Slow(delay, tc.loser))
			f, _, store := setup(t, 3*time.Second, fast, slow)
			f.Hedge = 20 * time.Millisecond // the loser stalls before it replies
			f.LoserGrace = 3 * time.Second
			ups := store.Load().Default.Upstreams
			var lastSum time.Duration
			for round := uint64(1); round <= rounds; round++ {
				_, qb := query(t, "loser.example.", dns.TypeA)
				if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeSuccess || r.Answer[0].(*dns.A).A.String() != "10.1.3.1" {
					t.Fatalf("round %d: want the fast answer, got %v", round, r)
				}
				waitFor(t, "the loser's reply to be booked", func() bool { return ups[1].LateReplies.Load() == round })
				// The winner may have stalled too on a loaded machine (20 ms):
				// then its reply took the stall back.
				if c := countersOf(ups[0]); c.Successes != round || c.Failures != 0 || c.Latencies != round || c.Stalls != c.LateReplies {
					t.Errorf("round %d: winner booked %+v", round, c)
				}
				if _, _, sum := ups[0].Latency.Snapshot(); sum <= 0 || sum > float64(round) {
					t.Errorf("round %d: winner latencies sum to %vs, want its reply times", round, sum)
				}
				want := tc.want
				want.Successes, want.Failures, want.Stalls, want.LateReplies, want.Latencies = round*want.Successes, round*want.Failures, round*want.Stalls, round*want.LateReplies, round*want.Latencies
				if c := countersOf(ups[1]); c != want {
					t.Errorf("round %d: loser booked %+v, want %+v", round, c, want)
				}
				if tc.want.Latencies == 1 {
					// Its latency is from its own send, not from the race's
					// end nor the engine's start.
					sum := time.Duration(ups[1].Latency.SumNs.Load())
					if got := sum - lastSum; got < delay || got > delay+600*time.Millisecond {
						t.Errorf("round %d: loser latency %v, want its %v delay", round, got, delay)
					}
					lastSum = sum
				}
			}
		})
	}
}

// idRand is an injected Forwarder.Rand: upstream query IDs (n = 65536) are
// handed out from a fixed sequence of distinct values, recorded; every other
// draw (the choice among equally healthy upstreams) is 0.
type idRand struct {
	mu   sync.Mutex
	next int
	ids  map[uint16]bool
}

func newIDRand(f *forwarder.Forwarder) *idRand {
	r := &idRand{next: 0x5a00, ids: map[uint16]bool{}}
	f.Rand = r.draw
	return r
}

func (r *idRand) draw(n int) int {
	if n != 1<<16 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.next
	r.next += 7
	r.ids[uint16(id)] = true
	return id
}

func (r *idRand) issued(id uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

func TestUpstreamIDsFresh(t *testing.T) {
	bothEngines(t, func(t *testing.T, handle handleFunc) {
		testUpstreamIDsFresh(t, func(f *forwarder.Forwarder, q []byte) []byte { return handle(t, f, q) })
	})
	t.Run("tcp", func(t *testing.T) {
		testUpstreamIDsFresh(t, func(f *forwarder.Forwarder, q []byte) []byte { return f.Handle(q, true) })
	})
}

// RFC 5452: every upstream query carries a fresh ID drawn from Rand, never
// the client's, and the two upstreams of one query never share one; over
// several queries no ID repeats.
func testUpstreamIDsFresh(t *testing.T, handle func(f *forwarder.Forwarder, q []byte) []byte) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.3.3"))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.3.3"))
	f, _, _ := setup(t, 2*time.Second, a, b)
	ids := newIDRand(f)
	const n = 5
	for i := range n {
		q := new(dns.Msg)
		q.SetQuestion("ids.example.", dns.TypeA)
		q.Id = uint16(0x1200 + i) // fixed and distinct: no chance collision
		qb, _ := q.Pack()
		if r := unpack(t, handle(f, qb)); r.Id != q.Id || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("reply %v", r)
		}
	}
	waitFor(t, "both upstreams to see every query", func() bool { return a.Count() == n && b.Count() == n })
	seen := map[uint16]int{}
	for i := range n {
		for _, s := range []dnstest.Seen{a.Seen()[i], b.Seen()[i]} {
			if s.ID == uint16(0x1200+i) {
				t.Errorf("query %d: an upstream saw the client's ID %#x", i, s.ID)
			}
			if !ids.issued(s.ID) {
				t.Errorf("query %d: upstream ID %#x was not drawn from Rand", i, s.ID)
			}
			seen[s.ID]++
		}
	}
	for id, k := range seen {
		if k > 1 {
			t.Errorf("upstream ID %#x used %d times", id, k)
		}
	}
}
