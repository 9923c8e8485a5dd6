package main

import (
	"math"
	"slices"
	"sort"
)

// loadSummary condenses a set of open-loop queries. Latency percentiles are
// taken over every query sent, a query without a NOERROR reply within the
// timeout counting as infinitely slow: with 2% lost, p99 is +Inf, which is
// what a client waiting on that query experiences.
type loadSummary struct {
	sent       int
	okPct      float64 // NOERROR within the timeout
	fastPct    float64 // NOERROR within 100 ms
	errReplies int     // answered, but not NOERROR (SERVFAIL, REFUSED)
	p50, p90   float64 // milliseconds, +Inf possible
	p99, p999  float64
	max        float64 // slowest answered query, ms (+Inf when any was lost)
	lost       int     // no reply at all within the timeout
}

const fastLimit = 100e6 // ns: "answered within 100 ms"

func summarize(lat []int64, errReplies int) loadSummary {
	s := loadSummary{sent: len(lat), errReplies: errReplies}
	if len(lat) == 0 {
		return s
	}
	sorted := append([]int64(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	ok, fast := 0, 0
	for _, l := range sorted {
		if l != math.MaxInt64 {
			ok++
		}
		if l <= fastLimit {
			fast++
		}
	}
	n := float64(len(sorted))
	s.okPct, s.fastPct = 100*float64(ok)/n, 100*float64(fast)/n
	// Error replies count as not OK but were answered: what is left had no
	// reply in time at all.
	s.lost = max(len(sorted)-ok-errReplies, 0)
	s.max = pctMs(sorted, 1)
	s.p50, s.p90 = pctMs(sorted, 0.50), pctMs(sorted, 0.90)
	s.p99, s.p999 = pctMs(sorted, 0.99), pctMs(sorted, 0.999)
	return s
}

// pctMs is the nearest-rank percentile of sorted latencies, in ms.
func pctMs(sorted []int64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	v := sorted[i]
	if v == math.MaxInt64 {
		return math.Inf(1)
	}
	return float64(v) / 1e6
}

// median of the values; NaN for none. With an even count it is the mean of
// the middle two, so one +Inf among two rounds makes the median +Inf
// (deliberately pessimistic).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// rotate returns rows starting at offset r, so each round runs the rows
// in a different order and slow drift of the machine spreads evenly.
func rotate[T any](xs []T, r int) []T {
	if len(xs) == 0 {
		return nil
	}
	r %= len(xs)
	return append(append([]T(nil), xs[r:]...), xs[:r]...)
}

// ccdfProbs are the exceedance probabilities the latency CCDF is sampled
// at: four points a decade, from 1 (the fastest query) down to the
// smallest a run of n queries can show (one query in n).
func ccdfProbs(n int) []float64 {
	var ps []float64
	for k := 0; ; k++ {
		p := math.Pow(10, -float64(k)/4)
		if p*float64(n) < 1 {
			return ps
		}
		ps = append(ps, p)
	}
}

// ccdf returns, for each exceedance probability p, the latency in ms that
// a fraction p of the queries reached or exceeded: the point (latency, p)
// of the complementary CDF. A lost query is +Inf, so a tail made of lost
// queries shows as +Inf (the plot leaves it out; the tables say "lost").
func ccdf(lat []int64, probs []float64) []float64 {
	if len(lat) == 0 {
		return nil
	}
	sorted := append([]int64(nil), lat...)
	slices.Sort(sorted)
	out := make([]float64, len(probs))
	for i, p := range probs {
		out[i] = pctMs(sorted, 1-p)
	}
	return out
}
