package state

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/test/fakeclock"
)

func TestRouteHedgeFollowsRecentLatency(t *testing.T) {
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("127.0.0.2:53")}
	reg := NewRegistry()
	store := NewStore(cfg, reg)
	clock := fakeclock.New()
	a := NewActor(store, reg, nil, time.Hour, clock, zerolog.Nop())
	route := store.Load().Default
	a.UpdateHealth()

	observe := func(u *Upstream, d time.Duration, n int) {
		for range n {
			u.Latency.Observe(d)
		}
	}
	tick := func() { clock.Advance(100 * time.Millisecond); a.UpdateHealth() }

	ups := route.Upstreams
	observe(ups[0], 300*time.Microsecond, hedgeMinSamples-1)
	tick()
	if h := route.Hedge(); h != 0 {
		t.Fatalf("hedge %v from %d replies, want none yet", h, hedgeMinSamples-1)
	}
	// Replies from either upstream count: a route is as fast as its
	// upstreams answer, whichever they are.
	observe(ups[1], 4*time.Millisecond, 200)
	tick()
	if h, want := route.Hedge(), hedgeFactor*5*time.Millisecond; h != want {
		t.Fatalf("hedge %v for replies in the 5 ms bucket, want %v", h, want)
	}
	// Slower replies (about 4% of them, in the 10 ms bucket) raise it at
	// once, to the 40 ms the forwarder caps it at anyway.
	observe(ups[0], 8*time.Millisecond, 10)
	tick()
	if h, want := route.Hedge(), hedgeFactor*10*time.Millisecond; h != want {
		t.Fatalf("hedge %v with 4%% of replies near 8 ms, want %v", h, want)
	}
	// Old latencies fade (10 s half-life): two minutes later, with fresh
	// fast replies only, the estimate is back down and floored.
	for range 1200 {
		tick()
	}
	observe(ups[0], 50*time.Microsecond, 100)
	tick()
	if h := route.Hedge(); h != hedgeFloor {
		t.Fatalf("hedge %v after two minutes of fast replies, want the %v floor", h, hedgeFloor)
	}
	// Without replies at all the estimate goes away.
	for range 1200 {
		tick()
	}
	if h := route.Hedge(); h != 0 {
		t.Fatalf("hedge %v after two silent minutes, want none", h)
	}
}

// TestRouteHedgeSurvivesNewSnapshot: a route's estimate is live state, not
// part of a snapshot, so the snapshot published when masters change keeps
// it (and the old snapshot is not written to).
func TestRouteHedgeSurvivesNewSnapshot(t *testing.T) {
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	reg := NewRegistry()
	store := NewStore(cfg, reg)
	clock := fakeclock.New()
	a := NewActor(store, reg, nil, time.Hour, clock, zerolog.Nop())
	before := store.Load()
	a.UpdateHealth()
	for range 100 {
		before.Default.Upstreams[0].Latency.Observe(4 * time.Millisecond)
	}
	clock.Advance(100 * time.Millisecond)
	a.UpdateHealth()
	want := before.Default.Hedge()
	if want == 0 {
		t.Fatal("no estimate from 100 replies")
	}
	a.SetMasters("test", []netip.Addr{netip.MustParseAddr("10.0.0.1")})
	after := store.Load()
	if after == before {
		t.Fatal("no new snapshot for new masters")
	}
	if got := after.Default.Hedge(); got != want {
		t.Fatalf("hedge in the new snapshot %v, want the estimate %v kept", got, want)
	}
}
