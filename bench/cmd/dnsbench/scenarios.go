package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
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
	unit       string // "ms" prints +Inf as "lost"; "%" and others as numbers
}

type scenario struct {
	id        int
	name      string
	kinds     []upKind // what listens on 127.0.1.1, .2, .3
	metrics   []metric
	headline  string // the metric quoted in the one-line summary
	perSecond bool
	run       func(ctx context.Context, h *harness, t *target) (sample, error)
}

var failMetrics = []metric{
	{"ok_pct", "answered %", "%"}, {"fast_pct", "≤100 ms %", "%"},
	{"p99", "p99 ms", "ms"}, {"err", "error replies", "n"},
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
				{"p99", "p99 ms", "ms"}, {"p999", "p99.9 ms", "ms"}, {"cpu_us", "CPU µs/query", "µs"}}},
		{id: 3, name: "one upstream silent from the start", kinds: []upKind{upNSD, upNSD, upSilent},
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(false)},
		{id: 4, name: "one upstream frozen mid-run (SIGSTOP)", kinds: all3,
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(true)},
		{id: 5, name: "two upstreams silent", kinds: []upKind{upNSD, upSilent, upSilent},
			headline: "fast_pct", perSecond: true, metrics: failMetrics, run: runFailure(false)},
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
	if answered := sum.okPct / 100 * float64(n); answered > 0 {
		s["cpu_us"] = (cpu1 - cpu0) / answered * 1e6
	}
	return s, nil
}

// runFailure measures resilience: second by second, how many queries were
// answered and how fast. With freeze, the third upstream's NSD is stopped
// at opts.freezeAt and continued after the run.
func runFailure(freeze bool) func(context.Context, *harness, *target) (sample, error) {
	return func(ctx context.Context, h *harness, t *target) (sample, error) {
		o := h.opts
		spec := h.loadSpec(t.addr, o.failRate, o.failDur)
		if freeze {
			p := h.ups.nsd(h.ups.ips[2])
			if p == nil {
				return nil, fmt.Errorf("no NSD on %s to freeze", h.ups.ips[2])
			}
			spec.events = []loadEvent{{at: o.freezeAt, fn: func() { _ = p.signalGroup(syscall.SIGSTOP) }}}
			defer func() {
				_ = p.signalGroup(syscall.SIGCONT)
				// Let it drain the backlog before the next row starts.
				time.Sleep(500 * time.Millisecond)
			}()
		}
		run, err := runOpenLoop(ctx, spec)
		if err != nil {
			return nil, err
		}
		n := len(run.sendNs)
		sum := summarize(run.latencies(0, n), run.errorReplies(0, n))
		s := sample{"ok_pct": sum.okPct, "fast_pct": sum.fastPct, "p99": sum.p99, "err": float64(sum.errReplies)}
		for sec := 0; sec*o.failRate < n; sec++ {
			from, to := sec*o.failRate, min((sec+1)*o.failRate, n)
			ss := summarize(run.latencies(from, to), 0)
			s[secKey(sec, "ok")] = ss.okPct
			s[secKey(sec, "fast")] = ss.fastPct
			s[secKey(sec, "p99")] = ss.p99
		}
		return s, nil
	}
}

func secKey(sec int, what string) string { return fmt.Sprintf("sec.%03d.%s", sec, what) }

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
