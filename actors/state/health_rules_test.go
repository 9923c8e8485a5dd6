package state_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/fakeclock"
)

// The health and hedge rules through their public seams only (the actor's
// UpdateHealth tick, an upstream's counters and Rank, a route's Hedge),
// with the documented numbers written out: a refactor that keeps the
// behaviour keeps these passing, one that changes a number fails them.

type healthEnv struct {
	actor *state.Actor
	route *state.Route
	clock *fakeclock.Clock
}

func newHealthEnv(t *testing.T) *healthEnv {
	t.Helper()
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("127.0.0.2:53")}
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	clock := fakeclock.New()
	e := &healthEnv{actor: state.NewActor(store, reg, nil, time.Hour, clock, zerolog.Nop()), route: store.Load().Default, clock: clock}
	e.actor.UpdateHealth()
	return e
}

// after advances the clock by d in one step and runs the actor's tick.
func (e *healthEnv) after(d time.Duration) {
	e.clock.Advance(d)
	e.actor.UpdateHealth()
}

func observe(u *state.Upstream, d time.Duration, n int) {
	for range n {
		u.Latency.Observe(d)
	}
}

// A late reply takes back exactly the stall it answers, round after round:
// what is left standing is the stalls nobody answered.
func TestHealthLateRepliesTakeBackTheirStallsOnly(t *testing.T) {
	e := newHealthEnv(t)
	u := e.route.Upstreams[0]
	rounds := []struct {
		stalls, late uint64
		rank         int
	}{
		{3, 3, 0}, // all merely slow
		{4, 1, 3}, // three never answered
		{0, 2, 1}, // two of those answered after all
	}
	for i, r := range rounds {
		u.Stalls.Add(r.stalls)
		u.LateReplies.Add(r.late)
		e.after(0)
		if u.Rank() != r.rank {
			t.Fatalf("round %d (+%d stalls, +%d late): rank %d (score %.2f), want %d", i, r.stalls, r.late, u.Rank(), u.Score(), r.rank)
		}
	}
}

// The hedge needs 20 recent replies for an estimate, no fewer.
func TestHedgeNeedsTwentyReplies(t *testing.T) {
	e := newHealthEnv(t)
	observe(e.route.Upstreams[0], 4*time.Millisecond, 19)
	e.after(100 * time.Millisecond)
	if h := e.route.Hedge(); h != 0 {
		t.Fatalf("hedge %v from 19 replies, want no estimate", h)
	}
	observe(e.route.Upstreams[0], 4*time.Millisecond, 1)
	e.after(0)
	if h := e.route.Hedge(); h != 20*time.Millisecond {
		t.Fatalf("hedge %v from 20 replies in the 5 ms bucket, want 4 × 5 ms", h)
	}
}

// The p99 is the first bucket holding 99 % of the replies: 99 of 100 in the
// 5 ms bucket make it 5 ms, although one reply was slower.
func TestHedgeP99IsInclusive(t *testing.T) {
	e := newHealthEnv(t)
	observe(e.route.Upstreams[0], 4*time.Millisecond, 99)
	observe(e.route.Upstreams[1], 8*time.Millisecond, 1)
	e.after(100 * time.Millisecond)
	if h := e.route.Hedge(); h != 20*time.Millisecond {
		t.Fatalf("hedge %v with 99 %% of replies in the 5 ms bucket, want 20ms", h)
	}
}

// Recent latencies fade with a 10 s half-life: 200 replies are 25 after
// 30 s (still an estimate) and 12.5 after 40 s (fewer than 20: none).
func TestHedgeLatencyHalfLife(t *testing.T) {
	e := newHealthEnv(t)
	observe(e.route.Upstreams[0], 4*time.Millisecond, 200)
	e.after(0)
	for _, s := range []struct {
		after time.Duration
		want  time.Duration
	}{
		{10 * time.Second, 20 * time.Millisecond},
		{20 * time.Second, 20 * time.Millisecond}, // 30 s: 25 left
		{10 * time.Second, 0},                     // 40 s: 12.5 left
	} {
		e.after(s.after)
		if h := e.route.Hedge(); h != s.want {
			t.Fatalf("hedge %v, want %v", h, s.want)
		}
	}
}
