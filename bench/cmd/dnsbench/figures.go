package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// figure is one PNG written next to the report, for one scenario.
type figure struct{ file, alt string }

// perSecondFig is one per-second plot: the sample key suffix it shows, the
// file name part, the y label and the title part.
type perSecondFig struct{ what, file, label, title string }

// writeFigures draws, from the medians over rounds, the per-second
// "within 100 ms %" of every per-second scenario (and "answered %" of the
// outage, where the two differ most), and the latency CCDF of scenario 2.
// Files go next to the report, which links them by name.
func (h *harness) writeFigures(dir string) (map[int][]figure, error) {
	out := map[int][]figure{}
	for _, sc := range h.scens {
		var figs []perSecondFig
		switch {
		case sc.perSecond:
			figs = append(figs, perSecondFig{"fast", "within-100ms", "answered within 100 ms (%)", "within 100 ms"})
			if sc.cache {
				figs = append(figs, perSecondFig{"ok", "answered", "answered (%)", "answered"})
			}
		case sc.id == 2:
			name := "scenario2-latency-ccdf.png"
			title := fmt.Sprintf("Scenario 2: %s — latency CCDF at %d qps", sc.name, h.opts.fixedRate)
			if err := plotCCDF(filepath.Join(dir, name), title, h.ccdfSeries(sc)); err != nil {
				return nil, err
			}
			out[sc.id] = append(out[sc.id], figure{name, "latency CCDF of every row, log-log"})
		}
		for _, f := range figs {
			name := fmt.Sprintf("scenario%d-%s.png", sc.id, f.file)
			title := fmt.Sprintf("Scenario %d: %s — %s, per second", sc.id, sc.name, f.title)
			if err := plotPerSecond(filepath.Join(dir, name), title, f.label, h.perSecondSeries(sc, f.what)); err != nil {
				return nil, err
			}
			out[sc.id] = append(out[sc.id], figure{name, f.title + " per second, every row"})
		}
	}
	return out, nil
}

// measuredRows are the rows of the report that ran in scenario sc.
func (h *harness) measuredRows(sc *scenario) []string {
	var out []string
	for _, name := range h.rowNames() {
		if _, ok := h.missing[name]; ok {
			continue
		}
		if r := rowByName(name); r != nil && sc.skips(r) != "" {
			continue
		}
		out = append(out, name)
	}
	return out
}

// perSecondSeries is, per row, the median over rounds of sec.NNN.<what>.
func (h *harness) perSecondSeries(sc *scenario, what string) []series {
	secs := h.secondKeys(sc)
	var ss []series
	for _, name := range h.measuredRows(sc) {
		s := series{name: name}
		for i, k := range secs {
			c := h.cell(sc, name, k+"."+what)
			if c.rounds == 0 {
				continue
			}
			s.xs = append(s.xs, float64(i))
			s.ys = append(s.ys, c.v)
		}
		ss = append(ss, s)
	}
	return ss
}

// ccdfSeries is, per row, the median latency at each exceedance
// probability of scenario 2.
func (h *harness) ccdfSeries(sc *scenario) []series {
	probs := ccdfProbs(int(float64(h.opts.fixedRate) * h.opts.fixedDur.Seconds()))
	var ss []series
	for _, name := range h.measuredRows(sc) {
		s := series{name: name}
		for i, p := range probs {
			c := h.cell(sc, name, ccdfKey(i))
			if c.rounds == 0 {
				continue
			}
			s.xs = append(s.xs, c.v)
			s.ys = append(s.ys, p)
		}
		ss = append(ss, s)
	}
	return ss
}

// secondKeys are the "sec.NNN" prefixes present in any sample of sc, in
// order.
func (h *harness) secondKeys(sc *scenario) []string {
	secs := map[string]bool{}
	for _, rs := range h.results[sc.id] {
		for _, r := range rs {
			for k := range r.s {
				if strings.HasPrefix(k, "sec.") {
					secs[k[:7]] = true
				}
			}
		}
	}
	var keys []string
	for k := range secs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func rowByName(name string) *row {
	for _, r := range allRows {
		if r.name == name {
			return r
		}
	}
	return nil
}
