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
