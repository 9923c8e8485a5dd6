package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// sample is one measurement of one row in one round: metric key → value.
// NaN means "does not apply" (no RSS for the direct row).
type sample map[string]float64

// target is what a scenario measures: an address and how to read the CPU
// and memory of whatever answers there.
type target struct {
	addr   string
	cpu    func() (float64, error)
	rssPID int // 0: no single process to report (the direct row)
}

type metric struct {
	key, title string
	// "ms" prints +Inf as "lost"; "%" and others as numbers. "count" (a
	// number of queries) and "share%" (a percentage of something other
	// than the row's own performance) get no ratio to direct: 0 lost
	// against direct's 98 is not "×0.00" of anything.
	unit string
}

type scenario struct {
	id        int
	name      string
	kinds     []upKind // what listens on 127.0.1.1, .2, .3
	metrics   []metric
	headline  string // the metric quoted in the one-line summary
	perSecond bool
	// cache: every row runs with its own cache on (the hit path and the
	// outage); otherwise no row caches and every query goes upstream.
	cache bool
	// noDirect: the direct row has nothing to show (no cache, so an outage
	// of every upstream is 0 % answered by construction) and is not run.
	noDirect bool
	run      func(ctx context.Context, h *harness, t *target) (sample, error)
}

// skips says why row r does not run in this scenario, or "".
func (sc *scenario) skips(r *row) string {
	switch {
	case r.cacheOnly && !sc.cache:
		return "cache scenarios only"
	case sc.noDirect && r.argv == nil:
		return "no cache: nothing to measure"
	}
	return ""
}

var failMetrics = []metric{
	{"ok_pct", "answered %", "%"}, {"fast_pct", "≤100 ms %", "%"},
	{"p99", "p99 ms", "ms"}, {"err", "error replies", "count"},
}

// tailMetrics are the figures of the failures a forwarder can only hide by
// asking more than one upstream (loss, stutter): the tail matters, and so
// does every query lost outright.
var tailMetrics = []metric{
	{"ok_pct", "answered %", "%"}, {"fast_pct", "≤100 ms %", "%"},
	{"p99", "p99 ms", "ms"}, {"p999", "p99.9 ms", "ms"}, {"max", "max ms", "ms"},
	{"lost", "lost", "count"}, {"err", "error replies", "count"},
}

func scenarios() []*scenario {
	all3 := []upKind{upNSD, upNSD, upNSD}
	return []*scenario{
		{id: 1, name: "saturation (dnsperf closed loop)", kinds: all3, headline: "qps", run: runSaturation,
			metrics: []metric{{"qps", "QPS", "n"}, {"noerror_pct", "NOERROR %", "%"}, {"lost_pct", "lost %", "%"}, {"avg_ms", "avg latency ms", "ms"},
				{"cpu_us", "CPU µs/query", "µs"}, {"rss_idle", "RSS idle MiB", "MiB"}, {"rss_sat", "RSS at saturation MiB", "MiB"},
				{"up_us", "upstreams' CPU µs/query", "µs"}, {"gen_us", "dnsperf's CPU µs/query", "µs"},
				{"machine_us", "machine CPU µs/query", "µs"}, {"idle_pct", "machine idle %", "%"},
				{"ceiling", "QPS ceiling (row's own CPU at 0)", "n"}}},
		{id: 2, name: "fixed rate, all upstreams up", kinds: all3, headline: "p99", run: runFixed,
			metrics: []metric{{"ok_pct", "answered %", "%"}, {"p50", "p50 ms", "ms"}, {"p90", "p90 ms", "ms"},
				{"p99", "p99 ms", "ms"}, {"p999", "p99.9 ms", "ms"}, {"cpu_us", "CPU µs/query", "µs"},
				{"add_p50", "added p50 ms (row − direct)", "ms"}, {"add_p99", "added p99 ms (row − direct)", "ms"}}},
		{id: 3, name: "one upstream silent from the start", kinds: []upKind{upNSD, upNSD, upSilent},
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(nil)},
		{id: 4, name: "one upstream frozen mid-run (SIGSTOP)", kinds: all3,
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(freezeOne)},
		{id: 5, name: "two upstreams silent", kinds: []upKind{upNSD, upSilent, upSilent},
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(nil)},
		{id: 6, name: "packet loss on every upstream (each way, at random)", kinds: all3,
			headline: "fast_pct", perSecond: true, run: runFailure(packetLoss),
			metrics: append(slices.Clone(tailMetrics), metric{"drop_pct", "datagrams dropped %", "share%"})},
		{id: 7, name: "one upstream stutters (SIGSTOP for a moment, periodically)", kinds: all3,
			headline: "fast_pct", perSecond: true, metrics: tailMetrics, run: runFailure(stutter)},
		{id: 8, name: "hit path: every row's own cache on, warmed (dnsperf closed loop)", kinds: all3, cache: true,
			headline: "qps", run: runHitPath,
			metrics: []metric{{"qps", "QPS", "n"}, {"noerror_pct", "NOERROR %", "%"}, {"avg_ms", "avg latency ms", "ms"},
				{"cpu_us", "CPU µs/query", "µs"}, {"rss_sat", "RSS at saturation MiB", "MiB"},
				{"up_us", "upstreams' CPU µs/query", "µs"}, {"idle_pct", "machine idle %", "%"}}},
		{id: 9, name: "all upstreams down (SIGSTOP) after a warm-up, past the TTL", kinds: all3, cache: true, noDirect: true,
			headline: "fast_pct", perSecond: true, run: runFailure(allDown),
			metrics: []metric{{"ok_pct", "answered %", "%"}, {"fast_pct", "≤100 ms %", "%"},
				{"p99", "p99 ms", "ms"}, {"lost", "lost", "count"}, {"err", "error replies", "count"}}},
	}
}

func runSaturation(ctx context.Context, h *harness, t *target) (sample, error) {
	s := sample{"rss_idle": math.NaN(), "rss_sat": math.NaN()}
	if t.rssPID != 0 {
		if kib, err := rssKiB(t.rssPID); err == nil {
			s["rss_idle"] = float64(kib) / 1024
		}
	}
	// Sample RSS through the run: the peak is the figure an operator sizes
	// memory limits by.
	stop := make(chan struct{})
	var peak int64
	var wg sync.WaitGroup
	if t.rssPID != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if kib, err := rssKiB(t.rssPID); err == nil && kib > peak {
					peak = kib
				}
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
	}
	cpu0, err := t.cpu()
	if err != nil {
		return nil, err
	}
	up0, err := h.ups.cpu()
	if err != nil {
		return nil, err
	}
	m0, err := machineCPU()
	if err != nil {
		return nil, err
	}
	o := h.opts
	argv := dnsperfArgs(t.addr, h.queryFile, o.satClients, o.satOutstanding, o.satDur)
	h.noteCommand("saturation", argv)
	res, out, err := runDNSPerf(ctx, argv, o.satDur+30*time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, tailString(out, 300))
	}
	cpu1, err := t.cpu()
	if err != nil {
		return nil, err
	}
	up1, err := h.ups.cpu()
	if err != nil {
		return nil, err
	}
	m1, err := machineCPU()
	if err != nil {
		return nil, err
	}
	s["qps"] = res.qps
	s["avg_ms"] = res.avgLatency * 1e3
	s["lost_pct"] = pct(res.lost, res.sent)
	// A forwarder answering SERVFAIL fast would look fast: show how many
	// answers were real ones.
	s["noerror_pct"] = pct(res.noerror, res.sent)
	// Where the machine's CPU went, per answered query: the row itself, the
	// upstreams, the load generator, and everything together (kernel
	// softirq work included). With the machine idle % this shows how far
	// the row is from the machine's own ceiling (saturationCeiling).
	perQuery := func(sec float64) float64 {
		if res.completed == 0 {
			return math.NaN()
		}
		return sec / float64(res.completed) * 1e6
	}
	s["cpu_us"] = perQuery(cpu1 - cpu0)
	s["up_us"] = perQuery(up1 - up0)
	s["gen_us"] = perQuery(res.cpu)
	s["machine_us"] = perQuery(m1.busy - m0.busy)
	// The ceiling: what the machine could answer if the row itself used no
	// CPU at all, with the upstreams and dnsperf costing what they cost
	// behind this row (a row that sends two upstream queries per query
	// makes the upstreams work twice).
	s["ceiling"] = math.NaN()
	if others := s["up_us"] + s["gen_us"]; others > 0 {
		s["ceiling"] = float64(runtime.NumCPU()) * 1e6 / others
	}
	s["idle_pct"] = math.NaN()
	if all := (m1.busy + m1.idle + m1.steal) - (m0.busy + m0.idle + m0.steal); all > 0 {
		s["idle_pct"] = (m1.idle - m0.idle) / all * 100
	}
	if peak > 0 {
		s["rss_sat"] = float64(peak) / 1024
	}
	return s, nil
}

func runFixed(ctx context.Context, h *harness, t *target) (sample, error) {
	o := h.opts
	// Warm-up: Go runtimes grow stacks and pools on the first load; the
	// steady state is what this scenario is about.
	if o.warmup > 0 {
		if _, err := runOpenLoop(ctx, h.loadSpec(t.addr, o.fixedRate, o.warmup)); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	// CPU at a fixed rate is what a node pays every day: a node's
	// forwarder is rarely saturated. At a moderate rate most of a
	// forwarder's cost is waking up, which saturation hides.
	cpu0, err := t.cpu()
	if err != nil {
		return nil, err
	}
	run, err := runOpenLoop(ctx, h.loadSpec(t.addr, o.fixedRate, o.fixedDur))
	if err != nil {
		return nil, err
	}
	cpu1, err := t.cpu()
	if err != nil {
		return nil, err
	}
	n := len(run.sendNs)
	sum := summarize(run.latencies(0, n), run.errorReplies(0, n))
	s := sample{"ok_pct": sum.okPct, "p50": sum.p50, "p90": sum.p90, "p99": sum.p99, "p999": sum.p999, "cpu_us": math.NaN()}
	for i, v := range ccdf(run.latencies(0, n), ccdfProbs(n)) {
		s[ccdfKey(i)] = v
	}
	if answered := sum.okPct / 100 * float64(n); answered > 0 {
		s["cpu_us"] = (cpu1 - cpu0) / answered * 1e6
	}
	return s, nil
}

// failure sets up one failure for a measurement of runFailure: it may
// change the load (events, duration) and returns finish, which records
// what it measured into the sample and undoes the failure.
type failure func(ctx context.Context, h *harness, t *target, spec *loadSpec) (finish func(sample), err error)

// runFailure measures resilience: second by second, how many queries were
// answered and how fast, while fail (nil: none beyond the scenario's
// upstream kinds) is in force.
func runFailure(fail failure) func(context.Context, *harness, *target) (sample, error) {
	return func(ctx context.Context, h *harness, t *target) (sample, error) {
		o := h.opts
		spec := h.loadSpec(t.addr, o.failRate, o.failDur)
		finish := func(sample) {}
		if fail != nil {
			f, err := fail(ctx, h, t, &spec)
			if err != nil {
				return nil, err
			}
			finish = f
		}
		run, err := runOpenLoop(ctx, spec)
		s := sample{}
		finish(s)
		if err != nil {
			return nil, err
		}
		n := len(run.sendNs)
		sum := summarize(run.latencies(0, n), run.errorReplies(0, n))
		s["ok_pct"], s["fast_pct"], s["err"] = sum.okPct, sum.fastPct, float64(sum.errReplies)
		s["p99"], s["p999"], s["max"], s["lost"] = sum.p99, sum.p999, sum.max, float64(sum.lost)
		for sec, b := range perSecond(run, o.failRate) {
			s[secKey(sec, "ok")] = b.okPct
			s[secKey(sec, "fast")] = b.fastPct
			s[secKey(sec, "p99")] = b.p99
		}
		return s, nil
	}
}

// perSecond summarizes each second of the schedule: query i was due at
// i/rate s, so second k holds queries [k×rate, (k+1)×rate).
func perSecond(run *loadRun, rate int) []loadSummary {
	n := len(run.sendNs)
	var out []loadSummary
	for from := 0; from < n; from += rate {
		to := min(from+rate, n)
		out = append(out, summarize(run.latencies(from, to), run.errorReplies(from, to)))
	}
	return out
}

// freezeOne: the third upstream's NSD is stopped at opts.freezeAt and
// continued after the run.
func freezeOne(_ context.Context, h *harness, _ *target, spec *loadSpec) (func(sample), error) {
	p := h.ups.nsd(h.ups.ips[2])
	if p == nil {
		return nil, fmt.Errorf("no NSD on %s to freeze", h.ups.ips[2])
	}
	spec.events = []loadEvent{{at: h.opts.freezeAt, fn: func() { _ = p.signalGroup(syscall.SIGSTOP) }}}
	return func(sample) { thaw(p) }, nil
}

// thaw continues a frozen NSD and lets it drain its backlog before the
// next row starts.
func thaw(ps ...*proc) {
	for _, p := range ps {
		_ = p.signalGroup(syscall.SIGCONT)
	}
	time.Sleep(500 * time.Millisecond)
}

// packetLoss drops opts.lossPct % of the datagrams to and from every
// upstream for the run, and records the share its rules really dropped.
func packetLoss(_ context.Context, h *harness, _ *target, _ *loadSpec) (func(sample), error) {
	// In the caller's namespace the rules would also drop whatever else
	// talks to 127.0.1.x:53 on this machine.
	if os.Getenv(netnsEnv) == "" {
		return nil, fmt.Errorf("scenario 6 runs only in the benchmark's own network namespace (drop -netns=false)")
	}
	if err := nftAvailable(); err != nil {
		return nil, err
	}
	permille := int(math.Round(h.opts.lossPct * 10))
	if err := nftApply(lossRules(h.ups.ips, h.ups.port, permille)); err != nil {
		return nil, err
	}
	return func(s sample) {
		defer nftDelete()
		s["drop_pct"] = math.NaN()
		c, err := nftLossCount()
		if err != nil {
			logf("  loss counters: %v", err)
			return
		}
		s["drop_pct"] = c.pct()
		logf("  loss rules: %d of %d datagrams dropped (%.2f%%)", c.dropped, c.seen, c.pct())
	}, nil
}

// stutter freezes the first upstream (the one the direct row asks, so
// direct shows what a plain stub resolver suffers) for opts.stutterPause
// every opts.stutterPeriod: a GC pause or an overloaded master, too short
// for a health check to take it out.
func stutter(_ context.Context, h *harness, _ *target, spec *loadSpec) (func(sample), error) {
	p := h.ups.nsd(h.ups.ips[0])
	if p == nil {
		return nil, fmt.Errorf("no NSD on %s to stutter", h.ups.ips[0])
	}
	o := h.opts
	spec.events = stutterEvents(spec.dur, o.stutterPeriod, o.stutterPause,
		func() { _ = p.signalGroup(syscall.SIGSTOP) }, func() { _ = p.signalGroup(syscall.SIGCONT) })
	return func(sample) { thaw(p) }, nil
}

// stutterEvents freezes at every multiple of period within dur and thaws
// pause later (each thaw is scheduled even if it falls after dur, so
// nothing stays frozen for the drain).
func stutterEvents(dur, period, pause time.Duration, freeze, thaw func()) []loadEvent {
	var evs []loadEvent
	for at := period; at < dur; at += period {
		evs = append(evs, loadEvent{at: at, fn: freeze}, loadEvent{at: at + pause, fn: thaw})
	}
	return evs
}

// allDown: warm the row's cache with the query file, then freeze every
// upstream for opts.downDur, well past the records' TTL, so that what the
// row answers is first fresh from its cache and then stale.
func allDown(ctx context.Context, h *harness, t *target, spec *loadSpec) (func(sample), error) {
	if err := warm(ctx, h, t.addr); err != nil {
		return nil, err
	}
	var ps []*proc
	for _, ip := range h.ups.ips {
		p := h.ups.nsd(ip)
		if p == nil {
			return nil, fmt.Errorf("no NSD on %s to freeze", ip)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.signalGroup(syscall.SIGSTOP); err != nil {
			thaw(ps...)
			return nil, err
		}
	}
	spec.dur = h.opts.downDur
	return func(sample) { thaw(ps...) }, nil
}

// runHitPath is the saturation run against a warmed cache: every query is
// a hit, so what is measured is the row's own answer path.
func runHitPath(ctx context.Context, h *harness, t *target) (sample, error) {
	if err := warm(ctx, h, t.addr); err != nil {
		return nil, err
	}
	return runSaturation(ctx, h, t)
}

// warm asks every name of the query file twice (some caches store an
// answer only on its second sighting) and requires the answers.
func warm(ctx context.Context, h *harness, addr string) error {
	rate := h.opts.failRate
	dur := time.Duration(float64(2*len(h.queries)) / float64(rate) * float64(time.Second))
	run, err := runOpenLoop(ctx, h.loadSpec(addr, rate, dur))
	if err != nil {
		return fmt.Errorf("cache warm-up: %w", err)
	}
	n := len(run.sendNs)
	if sum := summarize(run.latencies(0, n), run.errorReplies(0, n)); sum.okPct < 99 {
		return fmt.Errorf("cache warm-up: only %.2f%% answered", sum.okPct)
	}
	return nil
}

func secKey(sec int, what string) string { return fmt.Sprintf("sec.%03d.%s", sec, what) }

// ccdfKey names the latency at ccdfProbs(n)[i] in a scenario 2 sample.
func ccdfKey(i int) string { return fmt.Sprintf("ccdf.%02d", i) }

func pct(part, whole int64) float64 {
	if whole == 0 {
		return math.NaN()
	}
	return 100 * float64(part) / float64(whole)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
