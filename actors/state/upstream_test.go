package state

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/msg"
	"github.com/spartan-dns/spartan/test/fakeclock"
)

// newTestActor returns an actor on a clock advanced by hand, so decay is
// tested without sleeping.
func newTestActor(t *testing.T) (*Actor, *Store, *fakeclock.Clock) {
	t.Helper()
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("127.0.0.2:53")}
	reg := NewRegistry()
	store := NewStore(cfg, reg)
	clk := fakeclock.New()
	return NewActor(store, reg, nil, time.Hour, clk, zerolog.Nop()), store, clk
}

func TestHealthScoreDecays(t *testing.T) {
	a, store, clk := newTestActor(t)
	u := store.Load().Default.Upstreams[0]
	a.UpdateHealth()
	u.Failures.Add(4)
	a.UpdateHealth()
	if u.Rank() != 4 {
		t.Fatalf("rank after 4 failures = %d", u.Rank())
	}
	steps := []struct {
		after time.Duration
		rank  int
	}{
		{healthHalfLife, 2},     // 4 → 2
		{healthHalfLife, 1},     // 2 → 1
		{2 * healthHalfLife, 0}, // 1 → 0.25: forgotten, chosen again
	}
	for _, s := range steps {
		clk.Advance(s.after)
		a.UpdateHealth()
		if u.Rank() != s.rank {
			t.Fatalf("after %v more: rank %d (score %.2f), want %d", s.after, u.Rank(), u.Score(), s.rank)
		}
	}
	if other := store.Load().Default.Upstreams[1]; other.Score() != 0 {
		t.Errorf("untouched upstream has score %v", other.Score())
	}
}

func TestHealthStallTakenBackByLateReply(t *testing.T) {
	a, store, _ := newTestActor(t)
	u := store.Load().Default.Upstreams[0]
	u.Stalls.Add(3)
	a.UpdateHealth()
	if u.Rank() != 3 {
		t.Fatalf("rank after 3 stalls = %d", u.Rank())
	}
	u.LateReplies.Add(3) // they were merely slow
	a.UpdateHealth()
	if u.Rank() != 0 {
		t.Fatalf("rank after the late replies = %d (score %v)", u.Rank(), u.Score())
	}
}

func TestHealthScoreCapped(t *testing.T) {
	a, store, clk := newTestActor(t)
	u := store.Load().Default.Upstreams[0]
	u.Failures.Add(100000)
	a.UpdateHealth()
	if u.Score() != healthMaxScore {
		t.Fatalf("score %v, want the cap %v", u.Score(), healthMaxScore)
	}
	// A long-dead upstream is forgotten within about a minute of recovery.
	clk.Advance(75 * time.Second)
	a.UpdateHealth()
	if u.Rank() != 0 {
		t.Fatalf("rank 75 s after the last failure: %d", u.Rank())
	}
}

func TestMastersPublishSnapshot(t *testing.T) {
	a, store, _ := newTestActor(t)
	before := store.Load()
	ips := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	a.handle(msg.Masters{Source: "test", IPs: ips})
	after := store.Load()
	if after == before || len(after.Masters) != 2 || len(after.Mesos.Upstreams) != 2 || after.ZK[4] != ips[0] {
		t.Fatalf("snapshot not republished with masters: %+v", after)
	}
	if before.Masters != nil {
		t.Fatal("the old snapshot was mutated")
	}
	a.handle(msg.Masters{Source: "test", IPs: ips}) // same set: no new snapshot
	a.handle(msg.Masters{Source: "test"})           // empty: a bad read, ignored
	a.handle(msg.ReadFailed{Source: "test"})
	if store.Load() != after {
		t.Fatal("unchanged masters republished")
	}
	// Upstream objects (and their health) survive a republish.
	if after.Default.Upstreams[0] != before.Default.Upstreams[0] {
		t.Fatal("upstream identity lost across snapshots")
	}
}

// How one attempt is scored, the rule both engines of the query path use:
// each row is what happened to an attempt, in order, and what it counts.
func TestAttemptScoring(t *testing.T) {
	type counts struct{ successes, failures, stalls, late, latencies uint64 }
	tests := []struct {
		name   string
		events func(a *Attempt)
		want   counts
	}{
		{"good reply", func(a *Attempt) { a.Replied(true, time.Millisecond) }, counts{successes: 1, latencies: 1}},
		{"error reply (SERVFAIL, REFUSED)", func(a *Attempt) { a.Replied(false, time.Millisecond) }, counts{failures: 1}},
		{"failed fast", func(a *Attempt) { a.Failed() }, counts{failures: 1}},
		{"timed out", func(a *Attempt) { a.TimedOut() }, counts{failures: 1}},
		{"given up", func(a *Attempt) { a.Abandon() }, counts{}},
		{"stalled, then replied: the stall is taken back",
			func(a *Attempt) { a.Stall(); a.Replied(true, time.Second) }, counts{successes: 1, stalls: 1, late: 1, latencies: 1}},
		{"stalled, then an error reply: taken back, a failure",
			func(a *Attempt) { a.Stall(); a.Replied(false, time.Second) }, counts{failures: 1, stalls: 1, late: 1}},
		{"stalled, then timed out: the stall stands alone",
			func(a *Attempt) { a.Stall(); a.TimedOut() }, counts{stalls: 1}},
		{"stalled, then failed: both stand",
			func(a *Attempt) { a.Stall(); a.Failed() }, counts{failures: 1, stalls: 1}},
		{"stalled, then given up: the stall stands",
			func(a *Attempt) { a.Stall(); a.Abandon() }, counts{stalls: 1}},
		{"a stall counts once", func(a *Attempt) { a.Stall(); a.Stall() }, counts{stalls: 1}},
		{"an ended attempt counts nothing more", func(a *Attempt) {
			a.Replied(true, time.Millisecond)
			a.Stall()
			a.Replied(true, time.Millisecond)
			a.Failed()
			a.TimedOut()
		}, counts{successes: 1, latencies: 1}},
		{"no stall after a reply", func(a *Attempt) { a.Replied(true, time.Millisecond); a.Stall() }, counts{successes: 1, latencies: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := &Upstream{}
			var a Attempt
			a.Start(u)
			if !a.Pending() || a.Ended() || a.Upstream() != u {
				t.Fatal("a started attempt is pending, for its upstream")
			}
			tc.events(&a)
			_, lat, _ := u.Latency.Snapshot()
			got := counts{u.Successes.Load(), u.Failures.Load(), u.Stalls.Load(), u.LateReplies.Load(), lat}
			if got != tc.want {
				t.Fatalf("counted %+v, want %+v", got, tc.want)
			}
		})
	}
}
