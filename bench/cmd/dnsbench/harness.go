package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// harness owns the run: the upstreams, the rows, and every sample taken.
type harness struct {
	opts      *options
	env       *rowEnv
	ups       *upstreams
	queryFile string
	queries   [][]byte
	rows      []*row            // selected and runnable, in flag order
	missing   map[string]string // row → why it cannot run
	scens     []*scenario
	results   map[int]map[string][]result // scenario → row → one per round
	mu        sync.Mutex
	commands  map[string]string // scenario → a representative command line
	loadStart string
}

type result struct {
	round int
	s     sample
	err   string
}

func newHarness(o *options, dir string) (*harness, error) {
	h := &harness{opts: o, missing: map[string]string{},
		results: map[int]map[string][]result{}, commands: map[string]string{}, loadStart: loadavg()}
	var ups []string
	for _, ip := range upstreamIPs {
		ups = append(ups, net.JoinHostPort(ip, strconv.Itoa(o.upstreamPort)))
	}
	h.env = &rowEnv{dir: dir, upstreams: ups, listenPort: o.listenPort,
		spartanBin: absOr(o.spartanBin), corednsBin: absOr(o.corednsBin), ttl: o.ttl}
	check := slices.Clone(ups)
	for _, r := range allRows {
		if !slices.Contains(o.rows, r.name) {
			continue
		}
		if err := r.check(h.env); err != nil {
			h.missing[r.name] = err.Error()
			logf("row %s: %v", r.name, err)
			continue
		}
		h.rows = append(h.rows, r)
		if r.argv != nil {
			check = append(check, r.addr(h.env))
		}
	}
	if err := checkAddrs(check); err != nil {
		return nil, err
	}
	for _, sc := range scenarios() {
		if slices.Contains(o.scenarios, sc.id) {
			h.scens = append(h.scens, sc)
		}
	}
	names := zoneNames(o.names)
	zoneFile := filepath.Join(dir, "bench.test.zone")
	h.queryFile = filepath.Join(dir, "queries.txt")
	if err := writeZone(zoneFile, names, o.ttl); err != nil {
		return nil, err
	}
	if err := writeQueryFile(h.queryFile, names); err != nil {
		return nil, err
	}
	q, err := packQueries(names)
	if err != nil {
		return nil, err
	}
	h.queries = q
	h.ups = newUpstreams(upstreamIPs, o.upstreamPort, dir, zoneFile)
	return h, nil
}

// runAll: for each round, each scenario, each row (rotated by round). A row
// that fails in one measurement is recorded as failed there and the run
// goes on: one broken forwarder must not void the others' figures.
func (h *harness) runAll(ctx context.Context) error {
	for round := 0; round < h.opts.rounds; round++ {
		order := rotate(h.rows, round)
		for _, sc := range h.scens {
			if err := h.ups.reconcile(sc.kinds); err != nil {
				return fmt.Errorf("round %d scenario %d upstreams: %w", round+1, sc.id, err)
			}
			for _, r := range order {
				if sc.skips(r) != "" {
					continue
				}
				logf("round %d/%d scenario %d (%s): %s", round+1, h.opts.rounds, sc.id, sc.name, r.name)
				s, err := h.measure(ctx, sc, r)
				res := result{round: round, s: s}
				if err != nil {
					res.err = err.Error()
					logf("  failed: %v", err)
				} else {
					logf("  %s", brief(sc, s))
				}
				h.add(sc.id, r.name, res)
			}
		}
	}
	return nil
}

func (h *harness) measure(ctx context.Context, sc *scenario, r *row) (sample, error) {
	if r.argv == nil {
		// The direct row: the first upstream answers; CPU is NSD's own.
		t := &target{addr: r.addr(h.env), cpu: h.ups.cpu}
		return sc.run(ctx, h, t)
	}
	env := *h.env
	env.cache = sc.cache
	f, err := startRow(&env, r)
	if err != nil {
		return nil, err
	}
	defer f.proc.stop()
	t := &target{addr: r.addr(h.env), rssPID: f.proc.pid(),
		cpu: func() (float64, error) { return groupCPU(f.proc.pid()) }}
	s, err := sc.run(ctx, h, t)
	if err == nil && f.proc.exited() {
		err = fmt.Errorf("%s exited during the run: %v", r.name, f.proc.err)
	}
	return s, err
}

func (h *harness) add(sc int, rowName string, r result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.results[sc] == nil {
		h.results[sc] = map[string][]result{}
	}
	h.results[sc][rowName] = append(h.results[sc][rowName], r)
}

func (h *harness) loadSpec(addr string, rate int, dur time.Duration) loadSpec {
	return loadSpec{addr: addr, rate: rate, dur: dur, timeout: h.opts.timeout,
		sockets: h.opts.sockets, queries: h.queries}
}

// noteCommand records the first command line of each kind for the report.
func (h *harness) noteCommand(kind string, argv []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.commands[kind]; !ok {
		h.commands[kind] = strings.Join(argv, " ")
	}
}

// brief is the progress line of one measurement.
func brief(sc *scenario, s sample) string {
	var parts []string
	for _, m := range sc.metrics {
		if v, ok := s[m.key]; ok { // derived figures (added latency) are not in a sample
			parts = append(parts, m.key+"="+fmtValue(v, m.unit))
		}
	}
	return strings.Join(parts, " ")
}
