package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func (h *harness) writeReport(started time.Time) error {
	var b strings.Builder
	o := h.opts
	fmt.Fprintf(&b, "# Spartan benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `bench/cmd/dnsbench` (run by `make bench` → `bench/run.sh`) at %s; the run took %s. "+
		"Do not edit by hand: rerun the benchmark. How to read it: `bench/README.md`.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), time.Since(started).Round(time.Second))
	if o.quick {
		b.WriteString("> **Smoke run (`--quick`)**: short durations, to prove the harness end to end. " +
			"Do not compare these figures; run `make bench` without `--quick` for that.\n\n")
	}
	b.WriteString("## Machine\n\n")
	writeKV(&b, machineInfo(h.loadStart))
	b.WriteString("\n## Versions\n\n")
	writeKV(&b, versions(o))
	b.WriteString("\n## Command line\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", commandLine())
	h.writeSetup(&b)
	figs, err := h.writeFigures(filepath.Dir(o.out))
	if err != nil {
		return err
	}
	b.WriteString("\n## Summary\n\n")
	for _, sc := range h.scens {
		fmt.Fprintf(&b, "- %s\n", h.summaryLine(sc))
	}
	for _, sc := range h.scens {
		h.writeScenario(&b, sc, figs[sc.id])
	}
	if err := writeFile(o.out, b.String()); err != nil {
		return err
	}
	logf("wrote %s", o.out)
	return nil
}

func writeKV(b *strings.Builder, kv [][2]string) {
	b.WriteString("| | |\n|---|---|\n")
	for _, p := range kv {
		fmt.Fprintf(b, "| %s | %s |\n", p[0], strings.ReplaceAll(p[1], "|", "/"))
	}
}

func (h *harness) writeSetup(b *strings.Builder) {
	o := h.opts
	b.WriteString("## Setup\n\n")
	fmt.Fprintf(b, "- Upstreams: three NSD instances on %s (port %d), zone `%s` with %d A records; "+
		"every query is for one of them (NOERROR expected).\n", strings.Join(upstreamIPs, ", "), o.upstreamPort, zoneName, o.names)
	fmt.Fprintf(b, "- Rows: `direct` queries %s itself; every forwarder listens on its own loopback IP, port %d, "+
		"forwards to the three upstreams. Scenarios 1-7 are the miss path: no row caches (Spartan: `\"cache\": {\"enabled\": false}`). "+
		"Scenarios 8 and 9: every row with its own cache on (Spartan's cache, CoreDNS `cache` with `serve_stale`, "+
		"dnsdist `newPacketCache` with `staleTTL`, dnsmasq `--cache-size` with `--use-stale-cache`, and `unbound` "+
		"with `serve-expired` and `prefetch`, which runs in these two only). A row is started fresh for every measurement.\n",
		h.env.upstreams[0], o.listenPort)
	if o.netns {
		b.WriteString("- The whole run is in a network namespace of its own (`unshare --net`): its loopback, its nftables.\n")
	}
	for _, r := range allRows {
		if reason, ok := h.missing[r.name]; ok {
			fmt.Fprintf(b, "  - `%s`: **%s**\n", r.name, reason)
		} else if r.single && slices.Contains(h.rows, r) {
			fmt.Fprintf(b, "  - `%s` forwards to %s only: no race, for comparison with the row that races two upstreams.\n", r.name, h.env.upstreams[0])
		}
	}
	fmt.Fprintf(b, "- Rounds: %d, row order rotated each round; figures are medians over rounds; "+
		"`×r` is the median of the per-round ratios to the `direct` row of the same round.\n", o.rounds)
	if c, ok := h.commands["saturation"]; ok {
		fmt.Fprintf(b, "- Scenario 1 load: `%s` (shown for the first row measured; `-s`/`-p` differ per row). "+
			"CPU µs/query: the row's utime+stime (all its processes; for `direct`, the NSD processes) over the run, per completed query.\n", c)
	}
	fmt.Fprintf(b, "- Scenarios 2-7 and 9 load: our open-loop client (fixed schedule, %d UDP sockets); a query with no NOERROR reply "+
		"within %v is lost, and counts as infinitely slow in percentiles (a p99 of `lost` means more than 1%% lost). "+
		"Scenario 2: %d qps for %v after a %v warm-up. Scenarios 3-5: %d qps for %v; scenario 4 freezes the NSD on %s "+
		"with SIGSTOP at %v (SIGCONT after the run); silent upstreams read every query and never answer (UDP and TCP).\n",
		o.sockets, o.timeout, o.fixedRate, o.fixedDur, o.warmup, o.failRate, o.failDur, upstreamIPs[2], o.freezeAt)
	fmt.Fprintf(b, "- Scenario 6: %d qps for %v while an nftables rule (`numgen random`, input hook) drops %.1f%% of the UDP datagrams "+
		"to and from every upstream, each way; its counters give the share really dropped. "+
		"Scenario 7: %d qps for %v while the NSD on %s (the one `direct` asks) is stopped for %v every %v.\n",
		o.failRate, o.failDur, o.lossPct, o.failRate, o.failDur, upstreamIPs[0], o.stutterPause, o.stutterPeriod)
	fmt.Fprintf(b, "- Scenarios 8 and 9: records have TTL %v; each row is warmed with every name of the query file, twice. "+
		"Scenario 8 is scenario 1's dnsperf run on the warmed cache. Scenario 9 stops all three NSDs (SIGSTOP) after the warm-up "+
		"and sends %d qps over the warmed names for %v.\n", o.ttl, o.failRate, o.downDur)
}

// cell is the median of one metric of one row, with its ratio to direct.
type cell struct {
	v, ratio float64
	rounds   int
	errs     []string
}

func (h *harness) cell(sc *scenario, rowName, key string) cell {
	rs := h.results[sc.id][rowName]
	direct := map[int]sample{}
	for _, d := range h.results[sc.id]["direct"] {
		if d.err == "" {
			direct[d.round] = d.s
		}
	}
	// "add_K" is the latency a row adds: per round, its K minus direct's K.
	base, added := strings.CutPrefix(key, "add_")
	var vs, ratios []float64
	var c cell
	for _, r := range rs {
		if r.err != "" {
			c.errs = append(c.errs, fmt.Sprintf("round %d: %s", r.round+1, r.err))
			continue
		}
		v, ok := r.s[base]
		if !ok {
			v = math.NaN()
		}
		d, dok := direct[r.round]
		if added {
			if !dok {
				continue // no direct figure this round: nothing to subtract
			}
			v = r.s[base] - d[base]
		} else if dok {
			ratios = append(ratios, ratio(v, d[key]))
		}
		vs = append(vs, v)
	}
	c.v, c.ratio, c.rounds = median(vs), median(ratios), len(vs)
	return c
}

func ratio(v, d float64) float64 {
	// Against a lost direct figure (+Inf) no ratio says anything.
	if math.IsNaN(v) || math.IsNaN(d) || d == 0 || math.IsInf(d, 0) {
		return math.NaN()
	}
	return v / d
}

func (h *harness) rowNames() []string {
	var out []string
	for _, r := range allRows {
		if slices.Contains(h.opts.rows, r.name) {
			out = append(out, r.name)
		}
	}
	return out
}

func (h *harness) writeScenario(b *strings.Builder, sc *scenario, figs []figure) {
	fmt.Fprintf(b, "\n## Scenario %d: %s\n\n", sc.id, sc.name)
	b.WriteString("| row |")
	for _, m := range sc.metrics {
		fmt.Fprintf(b, " %s |", m.title)
	}
	b.WriteString("\n|---|")
	for range sc.metrics {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	var failures []string
	for _, name := range h.rowNames() {
		if reason, ok := h.missing[name]; ok {
			fmt.Fprintf(b, "| %s | %s |%s\n", name, reason, strings.Repeat(" |", len(sc.metrics)-1))
			continue
		}
		if reason := sc.skips(rowByName(name)); reason != "" {
			fmt.Fprintf(b, "| %s | not run: %s |%s\n", name, reason, strings.Repeat(" |", len(sc.metrics)-1))
			continue
		}
		fmt.Fprintf(b, "| %s |", name)
		for _, m := range sc.metrics {
			c := h.cell(sc, name, m.key)
			fmt.Fprintf(b, " %s |", fmtCell(c, m.unit, name == "direct"))
			if m == sc.metrics[0] {
				for _, e := range c.errs {
					failures = append(failures, fmt.Sprintf("`%s` %s", name, e))
				}
			}
		}
		b.WriteString("\n")
	}
	for _, f := range failures {
		fmt.Fprintf(b, "\n- failed: %s", oneLine(f))
	}
	if len(failures) > 0 {
		b.WriteString("\n")
	}
	for _, f := range figs {
		fmt.Fprintf(b, "\n![%s](%s)\n", f.alt, f.file)
	}
	if sc.perSecond {
		h.writePerSecond(b, sc)
	}
}

// commandLine is how this run was started: run.sh passes its own command
// line (DNSBENCH_COMMAND), which is what a reader would type again.
func commandLine() string {
	if c := os.Getenv("DNSBENCH_COMMAND"); c != "" {
		return c
	}
	return strings.Join(os.Args, " ")
}

// writePerSecond prints, for each second of the run, each row's median
// "answered % / ≤100 ms % / p99 ms" over the rounds.
func (h *harness) writePerSecond(b *strings.Builder, sc *scenario) {
	keys := h.secondKeys(sc)
	if len(keys) == 0 {
		return
	}
	cols := h.measuredRows(sc)
	b.WriteString("\nSecond by second (answered % / ≤100 ms % / p99 ms; medians over rounds):\n\n| s |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c)
	}
	b.WriteString("\n|---:|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, k := range keys {
		fmt.Fprintf(b, "| %s |", strings.TrimLeft(k[4:], "0")+orZero(k[4:]))
		for _, c := range cols {
			ok, fast, p99 := h.cell(sc, c, k+".ok"), h.cell(sc, c, k+".fast"), h.cell(sc, c, k+".p99")
			if ok.rounds == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %s / %s / %s |", fmtValue(ok.v, "%"), fmtValue(fast.v, "%"), fmtValue(p99.v, "ms"))
		}
		b.WriteString("\n")
	}
}

func orZero(s string) string {
	if strings.TrimLeft(s, "0") == "" {
		return "0"
	}
	return ""
}

func (h *harness) summaryLine(sc *scenario) string {
	var m metric
	for _, x := range sc.metrics {
		if x.key == sc.headline {
			m = x
		}
	}
	var parts []string
	for _, name := range h.rowNames() {
		if _, ok := h.missing[name]; ok {
			parts = append(parts, name+" missing")
			continue
		}
		if sc.skips(rowByName(name)) != "" {
			continue
		}
		c := h.cell(sc, name, m.key)
		parts = append(parts, name+" "+fmtCell(c, m.unit, name == "direct"))
	}
	return fmt.Sprintf("**%d. %s** — %s: %s", sc.id, sc.name, m.title, strings.Join(parts, "; "))
}

func fmtCell(c cell, unit string, direct bool) string {
	if c.rounds == 0 {
		return "failed"
	}
	s := fmtValue(c.v, unit)
	if !direct && !math.IsNaN(c.ratio) && unit != "count" && unit != "share%" {
		s += " (×" + fmtRatio(c.ratio) + ")"
	}
	return s
}

func fmtRatio(r float64) string {
	switch {
	case math.IsInf(r, 1):
		return "∞"
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.2f", r)
	}
}

func fmtValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1) && unit == "ms":
		return "lost"
	case math.IsInf(v, 1):
		return "∞"
	}
	switch unit {
	case "ms":
		if v < 10 {
			return fmt.Sprintf("%.3f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case "%", "share%":
		return fmt.Sprintf("%.2f", v)
	case "µs", "MiB":
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
