package forwarder

import (
	"math"

	"github.com/spartan-dns/spartan/actors/state"
)

// maxTracked bounds the upstreams of one route considered by a query (the
// race tracks tried upstreams in a bitmask).
const maxTracked = 64

// pick returns the index of the healthiest upstream not yet tried (lowest
// rank: fewest recent failures), at random among equals, or -1 when all
// have been tried. Randomness spreads load over equally healthy upstreams,
// so a recovered one is used again as soon as its score has decayed.
func (f *Forwarder) pick(ups []*state.Upstream, tried uint64) int {
	best, ties, bestRank := -1, 0, math.MaxInt
	for i, u := range ups[:min(len(ups), maxTracked)] {
		if tried&(1<<i) != 0 {
			continue
		}
		switch r := u.Rank(); {
		case r < bestRank:
			best, ties, bestRank = i, 1, r
		case r == bestRank:
			ties++
			if f.Rand(ties) == 0 { // reservoir sampling: uniform among equals
				best = i
			}
		}
	}
	return best
}
