package forwarder

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/rs/zerolog"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"

	"github.com/spartan-dns/spartan/actors/state"
)

// upstreamsWithScores builds upstreams whose published scores are given,
// by feeding failures through the same path the config actor uses.
func upstreamsWithScores(scores ...int) []*state.Upstream {
	cfg := config.Default()
	for i := range scores {
		cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.%d:53", i+1)))
	}
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	for i, s := range scores {
		store.Load().Default.Upstreams[i].Failures.Add(uint64(s))
	}
	state.NewActor(store, reg, nil, 0, clock.Real{}, zerolog.Nop()).UpdateHealth()
	return store.Load().Default.Upstreams
}

func TestPickPrefersHealthy(t *testing.T) {
	f := &Forwarder{Rand: rand.New(rand.NewPCG(1, 2)).IntN}
	tests := []struct {
		scores []int
		first  []int // acceptable first picks
		second []int // acceptable second picks
	}{
		{[]int{0, 0}, []int{0, 1}, []int{0, 1}},
		{[]int{5, 0, 0}, []int{1, 2}, []int{1, 2}},
		{[]int{0, 3, 1}, []int{0}, []int{2}},
		{[]int{2, 2, 2, 0}, []int{3}, []int{0, 1, 2}},
	}
	for _, tc := range tests {
		ups := upstreamsWithScores(tc.scores...)
		for range 50 {
			a := f.pick(ups, 0)
			b := f.pick(ups, 1<<a)
			if !contains(tc.first, a) || !contains(tc.second, b) || a == b {
				t.Fatalf("scores %v: picked %d then %d", tc.scores, a, b)
			}
		}
		all := uint64(1<<len(ups)) - 1
		if got := f.pick(ups, all); got != -1 {
			t.Errorf("all tried: pick = %d", got)
		}
	}
}

func TestPickRandomAmongEquals(t *testing.T) {
	f := &Forwarder{Rand: rand.New(rand.NewPCG(3, 4)).IntN}
	ups := upstreamsWithScores(0, 0, 0, 9)
	counts := make([]int, len(ups))
	for range 3000 {
		counts[f.pick(ups, 0)]++
	}
	for i := range 3 {
		if counts[i] < 800 || counts[i] > 1200 {
			t.Errorf("upstream %d chosen %d/3000 times, want about 1000 (%v)", i, counts[i], counts)
		}
	}
	if counts[3] != 0 {
		t.Errorf("unhealthy upstream chosen %d times", counts[3])
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
