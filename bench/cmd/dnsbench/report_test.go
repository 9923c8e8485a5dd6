package main

import (
	"math"
	"testing"
)

// The added latency of a row is, per round, its percentile minus direct's
// of the same round; the table gives the median over rounds.
func TestAddedLatencyCell(t *testing.T) {
	sc := scenarios()[1] // scenario 2
	h := &harness{opts: &options{rows: []string{"direct", "spartan"}}, missing: map[string]string{},
		results: map[int]map[string][]result{}}
	for round, v := range []struct{ direct, spartan float64 }{{0.05, 0.17}, {0.07, 0.15}, {0.06, 0.30}} {
		h.add(2, "direct", result{round: round, s: sample{"p50": v.direct}})
		h.add(2, "spartan", result{round: round, s: sample{"p50": v.spartan}})
	}
	// Differences 0.12, 0.08, 0.24: median 0.12 (not the difference of the
	// medians, 0.17 − 0.06 = 0.11).
	c := h.cell(sc, "spartan", "add_p50")
	if c.rounds != 3 || math.Abs(c.v-0.12) > 1e-9 || !math.IsNaN(c.ratio) {
		t.Fatalf("added p50 %+v, want 0.12 over 3 rounds, no ratio", c)
	}
	// A round without a direct figure has no added latency.
	h.add(2, "spartan", result{round: 3, s: sample{"p50": 0.2}})
	h.add(2, "spartan", result{round: 4, s: sample{"p50": 0.2}})
	if c := h.cell(sc, "spartan", "add_p50"); c.rounds != 3 || math.Abs(c.v-0.12) > 1e-9 {
		t.Fatalf("rounds without direct changed the figure: %+v", c)
	}
}

func TestScenarioSkips(t *testing.T) {
	unbound, direct, spartan := rowByName("unbound"), rowByName("direct"), rowByName("spartan")
	byID := map[int]*scenario{}
	for _, sc := range scenarios() {
		byID[sc.id] = sc
	}
	cases := []struct {
		sc   int
		r    *row
		runs bool
	}{
		{1, unbound, false}, {6, unbound, false}, {8, unbound, true}, {9, unbound, true},
		{8, direct, true}, {9, direct, false}, {9, spartan, true}, {6, direct, true},
	}
	for _, c := range cases {
		if got := byID[c.sc].skips(c.r) == ""; got != c.runs {
			t.Errorf("scenario %d row %s: runs %v, want %v", c.sc, c.r.name, got, c.runs)
		}
	}
	// The per-second scenarios (the ones plotted per second) are 3-7 and 9;
	// the cache scenarios 8 and 9.
	for _, sc := range scenarios() {
		if sc.perSecond != (sc.id >= 3 && sc.id != 8) {
			t.Errorf("scenario %d perSecond %v", sc.id, sc.perSecond)
		}
		if sc.cache != (sc.id >= 8) {
			t.Errorf("scenario %d cache %v", sc.id, sc.cache)
		}
	}
}
