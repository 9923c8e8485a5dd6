package main

import (
	"math"
	"slices"
	"testing"
)

func TestSummarize(t *testing.T) {
	ms := func(v float64) int64 { return int64(v * 1e6) }
	inf := int64(math.MaxInt64)
	cases := []struct {
		name     string
		lat      []int64
		ok, fast float64
		p50, p99 float64
	}{
		{"all fast", []int64{ms(1), ms(2), ms(3), ms(4)}, 100, 100, 2, 4},
		{"one slow", []int64{ms(1), ms(1), ms(1), ms(150)}, 100, 75, 1, 150},
		// A lost query is slower than any answered one: with 1 of 4 lost,
		// p99 is lost, p50 is not.
		{"one lost", []int64{ms(1), ms(2), ms(3), inf}, 75, 75, 2, math.Inf(1)},
		{"all lost", []int64{inf, inf}, 0, 0, math.Inf(1), math.Inf(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := summarize(c.lat, 0)
			if s.okPct != c.ok || s.fastPct != c.fast || s.p50 != c.p50 || s.p99 != c.p99 {
				t.Fatalf("got ok=%v fast=%v p50=%v p99=%v, want %v %v %v %v",
					s.okPct, s.fastPct, s.p50, s.p99, c.ok, c.fast, c.p50, c.p99)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1}, 2.5},
		{[]float64{1, math.Inf(1)}, math.Inf(1)},
	}
	for _, c := range cases {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing must be NaN")
	}
}

func TestRotate(t *testing.T) {
	xs := []string{"a", "b", "c"}
	cases := map[int][]string{0: {"a", "b", "c"}, 1: {"b", "c", "a"}, 4: {"b", "c", "a"}}
	for r, want := range cases {
		if got := rotate(xs, r); !slices.Equal(got, want) {
			t.Errorf("rotate(%d) = %v, want %v", r, got, want)
		}
	}
}

func TestRatioAndFormat(t *testing.T) {
	if r := ratio(50, 100); r != 0.5 {
		t.Errorf("ratio = %v", r)
	}
	if r := ratio(math.Inf(1), math.Inf(1)); !math.IsNaN(r) {
		t.Errorf("Inf/Inf must be NaN, got %v", r)
	}
	cases := []struct {
		v    float64
		unit string
		want string
	}{
		{math.Inf(1), "ms", "lost"}, {math.NaN(), "%", "–"}, {0.1234, "ms", "0.123"},
		{48.25, "ms", "48.2"}, {99.971, "%", "99.97"}, {12345.6, "n", "12346"},
	}
	for _, c := range cases {
		if got := fmtValue(c.v, c.unit); got != c.want {
			t.Errorf("fmtValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if got := fmtCell(cell{v: 200, ratio: 0.25, rounds: 2}, "n", false); got != "200 (×0.25)" {
		t.Errorf("fmtCell = %q", got)
	}
}

func TestSummarizeLostAndMax(t *testing.T) {
	ms := func(v float64) int64 { return int64(v * 1e6) }
	inf := int64(math.MaxInt64)
	cases := []struct {
		name      string
		lat       []int64
		errs      int
		lost      int
		max, p999 float64
	}{
		{"none lost", []int64{ms(1), ms(7), ms(3)}, 0, 0, 7, 7},
		// One of four had no reply, one an error reply (also +Inf): one lost.
		{"one lost one error", []int64{ms(1), inf, ms(3), inf}, 1, 1, math.Inf(1), math.Inf(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := summarize(c.lat, c.errs)
			if s.lost != c.lost || s.max != c.max || s.p999 != c.p999 {
				t.Fatalf("lost %d max %v p99.9 %v, want %d %v %v", s.lost, s.max, s.p999, c.lost, c.max, c.p999)
			}
		})
	}
}

func TestPercentileRanks(t *testing.T) {
	// 100 values 1..100 ms: nearest rank, so p99 is the 99th and the max
	// the 100th.
	lat := make([]int64, 100)
	for i := range lat {
		lat[i] = int64(i+1) * 1e6
	}
	if s := summarize(lat, 0); s.p99 != 99 || s.p50 != 50 || s.max != 100 {
		t.Fatalf("p50 %v p99 %v max %v, want 50 99 100", s.p50, s.p99, s.max)
	}
}

func TestCCDF(t *testing.T) {
	lat := make([]int64, 100)
	for i := range lat {
		lat[i] = int64(i+1) * 1e6 // 1..100 ms, shuffled below
	}
	slices.Reverse(lat)
	probs := []float64{1, 0.5, 0.1, 0.01}
	// The point for p is the (1−p) percentile: at p = 1 the fastest query,
	// at 0.5 the median, at 0.01 the p99.
	if got, want := ccdf(lat, probs), []float64{1, 50, 90, 99}; !slices.Equal(got, want) {
		t.Errorf("ccdf %v, want %v", got, want)
	}
	lat[0], lat[1] = math.MaxInt64, math.MaxInt64 // two lost: the 1 % tail is lost
	if got := ccdf(lat, probs); !math.IsInf(got[3], 1) || got[2] != 90 {
		t.Errorf("with two lost: %v, want the 1%% point lost and the 10%% point 90", got)
	}
}

func TestCCDFProbs(t *testing.T) {
	ps := ccdfProbs(50000)
	// Four points a decade down to one query in 50,000: 10^-4.5 is the
	// last (10^-4.75 × 50000 < 1).
	if len(ps) != 19 || ps[0] != 1 || math.Abs(ps[18]-math.Pow(10, -4.5)) > 1e-12 {
		t.Fatalf("got %d probabilities from %v to %v", len(ps), ps[0], ps[len(ps)-1])
	}
	for i := 1; i < len(ps); i++ {
		if ps[i] >= ps[i-1] {
			t.Fatalf("not decreasing at %d: %v", i, ps)
		}
	}
}
