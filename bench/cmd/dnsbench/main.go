// Command dnsbench measures Spartan side by side with the forwarders an
// operator would otherwise deploy (CoreDNS, dnsdist, dnsmasq) and with the
// upstream queried directly, against three local NSD upstreams, and writes
// bench/RESULTS.md. bench/run.sh installs the tools and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	rounds         int
	rows           []string
	scenarios      []int
	satDur         time.Duration
	satClients     int
	satOutstanding int
	fixedRate      int
	fixedDur       time.Duration
	warmup         time.Duration
	failRate       int
	failDur        time.Duration
	freezeAt       time.Duration
	lossPct        float64
	stutterPeriod  time.Duration
	stutterPause   time.Duration
	downDur        time.Duration
	ttl            time.Duration
	netns          bool
	timeout        time.Duration
	sockets        int
	names          int
	upstreamPort   int
	listenPort     int
	spartanBin     string
	corednsBin     string
	out            string
	keep           bool
	quick          bool
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("dnsbench", flag.ContinueOnError)
	var rows, scs string
	fs.IntVar(&o.rounds, "rounds", 2, "rounds; every scenario runs every row once per round, rows rotated")
	fs.StringVar(&rows, "rows", "direct,spartan,coredns,dnsdist,dnsmasq,unbound", "rows to measure (also: spartan-1up)")
	fs.StringVar(&scs, "scenarios", "1,2,3,4,5,6,7,8,9", "scenarios to run (bench/README.md)")
	fs.DurationVar(&o.satDur, "sat-duration", 10*time.Second, "saturation run length (dnsperf -l)")
	fs.IntVar(&o.satClients, "sat-clients", 20, "dnsperf -c")
	fs.IntVar(&o.satOutstanding, "sat-outstanding", 200, "dnsperf -q")
	fs.IntVar(&o.fixedRate, "rate", 5000, "fixed-rate scenario: queries per second")
	fs.DurationVar(&o.fixedDur, "duration", 10*time.Second, "fixed-rate scenario length")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "fixed-rate warm-up before measuring")
	fs.IntVar(&o.failRate, "fail-rate", 1000, "failure scenarios: queries per second")
	fs.DurationVar(&o.failDur, "fail-duration", 30*time.Second, "failure scenarios length")
	fs.DurationVar(&o.freezeAt, "freeze-at", 10*time.Second, "scenario 4: when the upstream is frozen")
	fs.Float64Var(&o.lossPct, "loss-pct", 1, "scenario 6: % of UDP datagrams to and from the upstreams dropped, each way (0.1 steps)")
	fs.DurationVar(&o.stutterPeriod, "stutter-period", 3*time.Second, "scenario 7: one upstream is frozen once every period")
	fs.DurationVar(&o.stutterPause, "stutter-pause", 300*time.Millisecond, "scenario 7: for this long")
	fs.DurationVar(&o.downDur, "down-duration", 90*time.Second, "scenario 9: how long all upstreams stay frozen (must outlast -ttl)")
	fs.DurationVar(&o.ttl, "ttl", 60*time.Second, "TTL of the zone's records (what the caches of scenarios 8 and 9 keep)")
	fs.BoolVar(&o.netns, "netns", true, "run in a network namespace of its own (unshare --net)")
	// 5 s is glibc's default resolver timeout: a reply later than that
	// reaches no stub resolver configured by default.
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "open-loop: later replies count as lost")
	fs.IntVar(&o.sockets, "sockets", 8, "open-loop: client sockets")
	fs.IntVar(&o.names, "names", 500, "names in the zone and the query file")
	fs.IntVar(&o.upstreamPort, "upstream-port", 53, "port of the NSD upstreams")
	fs.IntVar(&o.listenPort, "listen-port", 5300, "port every forwarder listens on (own IP each)")
	fs.StringVar(&o.spartanBin, "spartan", "bin/spartan", "Spartan binary")
	fs.StringVar(&o.corednsBin, "coredns", "bench/tools/coredns", "CoreDNS binary")
	fs.StringVar(&o.out, "out", "bench/RESULTS.md", "report path")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs, logs)")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: short durations (flags given explicitly still win)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickDefault(set, "sat-duration", &o.satDur, 3*time.Second)
		quickDefault(set, "duration", &o.fixedDur, 3*time.Second)
		quickDefault(set, "fail-duration", &o.failDur, 8*time.Second)
		quickDefault(set, "freeze-at", &o.freezeAt, 3*time.Second)
		quickDefault(set, "warmup", &o.warmup, 500*time.Millisecond)
		quickDefault(set, "ttl", &o.ttl, 4*time.Second)
		quickDefault(set, "down-duration", &o.downDur, 10*time.Second)
	}
	o.rows = splitList(rows)
	for _, s := range splitList(scs) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > len(scenarios()) {
			return nil, fmt.Errorf("-scenarios: %q is not 1..%d", s, len(scenarios()))
		}
		o.scenarios = append(o.scenarios, n)
	}
	for _, r := range o.rows {
		if !slices.ContainsFunc(allRows, func(x *row) bool { return x.name == r }) {
			return nil, fmt.Errorf("-rows: unknown row %q", r)
		}
	}
	if o.rounds < 1 || o.fixedRate < 1 || o.failRate < 1 || o.sockets < 1 {
		return nil, fmt.Errorf("-rounds, -rate, -fail-rate and -sockets must be positive")
	}
	if slices.Contains(o.scenarios, 4) && o.freezeAt >= o.failDur {
		return nil, fmt.Errorf("-freeze-at %v must be before the end of -fail-duration %v", o.freezeAt, o.failDur)
	}
	if o.lossPct < 0 || o.lossPct > 100 {
		return nil, fmt.Errorf("-loss-pct %v is not a percentage", o.lossPct)
	}
	if o.stutterPause <= 0 || o.stutterPause >= o.stutterPeriod {
		return nil, fmt.Errorf("-stutter-pause %v must be positive and shorter than -stutter-period %v", o.stutterPause, o.stutterPeriod)
	}
	// Scenario 9 is about answers that outlive their TTL.
	if o.ttl < time.Second || o.downDur <= o.ttl {
		return nil, fmt.Errorf("-down-duration %v must outlast -ttl %v (at least 1s)", o.downDur, o.ttl)
	}
	return o, nil
}

func quickDefault(set map[string]bool, name string, d *time.Duration, v time.Duration) {
	if !set[name] {
		*d = v
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(2)
	}
	if o.netns && os.Getenv(netnsEnv) == "" {
		code, err := reexecInNetns(os.Args[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	if os.Getenv(netnsEnv) != "" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			os.Exit(1)
		}
	}
	// First signal: kill every child and exit at once; the half-done run
	// has no report worth writing.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "dnsbench: %v: stopping children\n", sig)
		cleanup()
		os.Exit(130)
	}()
	err = run(context.Background(), o)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options) error {
	dir, err := os.MkdirTemp("", "dnsbench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	if o.keep {
		logf("scratch directory kept: %s", dir)
	} else {
		// Children are killed before this runs (cleanup order), so no NSD
		// is still writing into the directory.
		onExit(func() { os.RemoveAll(dir) })
	}
	h, err := newHarness(o, dir)
	if err != nil {
		return err
	}
	defer h.ups.close()
	started := time.Now()
	if err := h.runAll(ctx); err != nil {
		return err
	}
	return h.writeReport(started)
}

var upstreamIPs = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"}

// checkAddrs proves every loopback address the run needs can be bound, on
// UDP and TCP, before anything starts: on Linux all of 127/8 routes to lo,
// but a port already taken (a stray resolver on :53) would otherwise show
// up as a confusing row failure.
func checkAddrs(addrs []string) error {
	for _, a := range addrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return fmt.Errorf("loopback address %s not usable (udp): %w", a, err)
		}
		pc.Close()
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("loopback address %s not usable (tcp): %w", a, err)
		}
		ln.Close()
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s dnsbench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
