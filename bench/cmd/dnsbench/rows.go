package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// rowEnv is what every row needs to configure itself.
type rowEnv struct {
	dir        string   // scratch directory of this run
	upstreams  []string // "ip:port" of the three upstreams, in order
	listenPort int
	spartanBin string
	corednsBin string
	ttl        time.Duration // TTL of the zone's records
	// cache: the row runs with its own cache on (scenarios 8 and 9);
	// otherwise every row forwards every query (the miss path).
	cache bool
}

// row is one column of the comparison: something that answers DNS on addr.
type row struct {
	name string
	ip   string // own loopback address, so rows never collide
	// check says why the row cannot run (binary missing), or nil.
	check func(e *rowEnv) error
	// argv returns the command line after writing any config file it needs.
	// nil for the direct row, which queries the first upstream itself.
	argv func(e *rowEnv, r *row) ([]string, error)
	// single: the row forwards to the first upstream only.
	single bool
	// cacheOnly: the row has no cache-off mode worth measuring (Unbound
	// is a caching resolver through and through), so it runs only in the
	// scenarios where every row has its cache on.
	cacheOnly bool
}

func (r *row) addr(e *rowEnv) string {
	if r.argv == nil {
		return e.upstreams[0]
	}
	return net.JoinHostPort(r.ip, strconv.Itoa(e.listenPort))
}

// allRows is every row, in report order; -rows picks which run (by
// default all but spartan-1up), and rounds rotate them.
var allRows = []*row{
	{name: "direct", check: func(*rowEnv) error { return nil }},
	{name: "spartan", ip: "127.0.2.1", check: func(e *rowEnv) error { return fileExec(e.spartanBin) }, argv: spartanArgv},
	{name: "coredns", ip: "127.0.2.2", check: func(e *rowEnv) error { return fileExec(e.corednsBin) }, argv: corednsArgv},
	{name: "dnsdist", ip: "127.0.2.3", check: func(*rowEnv) error { return onPath("dnsdist") }, argv: dnsdistArgv},
	{name: "dnsmasq", ip: "127.0.2.4", check: func(*rowEnv) error { return onPath("dnsmasq") }, argv: dnsmasqArgv},
	// Not in the default rows: Spartan with the first upstream only, so no
	// race. Beside the spartan row it shows what racing two upstreams costs
	// when the upstreams share the machine's cores (bench/README.md).
	{name: "spartan-1up", ip: "127.0.2.5", check: func(e *rowEnv) error { return fileExec(e.spartanBin) }, argv: spartanArgv, single: true},
	{name: "unbound", ip: "127.0.2.6", check: func(*rowEnv) error { return onPath("unbound") }, argv: unboundArgv, cacheOnly: true},
}

// upstreams is what the row forwards to.
func (r *row) upstreams(e *rowEnv) []string {
	if r.single {
		return e.upstreams[:1]
	}
	return e.upstreams
}

func spartanArgv(e *rowEnv, r *row) ([]string, error) {
	dir := filepath.Join(e.dir, r.name)
	cfg := map[string]any{
		"bind_ips":           []string{r.ip},
		"udp_port":           e.listenPort,
		"tcp_port":           e.listenPort,
		"upstream_resolvers": r.upstreams(e),
		"interface":          map[string]any{"manage": false},
		"http_listen":        "",
		"ctl_socket":         filepath.Join(dir, "spartanctl.sock"),
		"master_source":      "none",
		"cache":              spartanCache(e),
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("spartan config: %w", err)
	}
	path := filepath.Join(dir, "spartan.json")
	if err := writeFile(path, string(b)+"\n"); err != nil {
		return nil, err
	}
	// warn: logging every query would measure the logger, not the forwarder.
	return []string{e.spartanBin, "-config", path, "-log-level", "warn"}, nil
}

// spartanCache is the one place the benchmark says how Spartan's cache is
// configured (../shared/SPEC.md "Cache"): off for the miss path, on with
// every stale and prefetch option spelled out for the cache scenarios, so
// a change of the defaults does not silently change what is measured.
func spartanCache(e *rowEnv) map[string]any {
	if !e.cache {
		return map[string]any{"enabled": false}
	}
	return map[string]any{
		"enabled":          true,
		"max_entries":      cacheEntries,
		"max_ttl":          "1h",
		"serve_stale":      true,
		"stale_max_age":    "24h",
		"stale_answer_ttl": "30s",
		"client_timeout":   "1800ms",
		"stale_recheck":    "30s",
		"prefetch":         true,
	}
}

// cacheEntries is every row's cache size: far more than the zone's names,
// so no row evicts during the cache scenarios.
const cacheEntries = 10000

// corednsArgv: forward plugin, default policy (random) and default health
// checking. The miss path has no cache plugin; the cache scenarios add
// `cache` with serve_stale for a day (immediate mode, its default: the
// stale answer is given at once and refreshed in the background).
func corednsArgv(e *rowEnv, r *row) ([]string, error) {
	path := filepath.Join(e.dir, "coredns", "Corefile")
	cache := ""
	if e.cache {
		cache = fmt.Sprintf("\tcache {\n\t\tsuccess %d\n\t\tdenial %d\n\t\tserve_stale 24h\n\t}\n", cacheEntries, cacheEntries)
	}
	conf := fmt.Sprintf(".:%d {\n\tbind %s\n%s\tforward . %s\n}\n", e.listenPort, r.ip, cache, strings.Join(e.upstreams, " "))
	if err := writeFile(path, conf); err != nil {
		return nil, err
	}
	return []string{e.corednsBin, "-conf", path}, nil
}

// dnsdistArgv: no console or web server is configured, leastOutstanding
// policy (its default, stated for the record), security polling off (it
// would query the Internet). Health checks ask for the benchmark zone so
// NSD answers them authoritatively. The miss path has no packet cache; the
// cache scenarios give the default pool one, with stale answers for a day
// (dnsdist serves them only when every server of the pool is down).
func dnsdistArgv(e *rowEnv, r *row) ([]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "setLocal(%q)\n", net.JoinHostPort(r.ip, strconv.Itoa(e.listenPort)))
	fmt.Fprintf(&b, "setSecurityPollSuffix(\"\")\n")
	fmt.Fprintf(&b, "setServerPolicy(leastOutstanding)\n")
	for _, u := range e.upstreams {
		fmt.Fprintf(&b, "newServer({address=%q, checkName=%q})\n", u, zoneName)
	}
	if e.cache {
		fmt.Fprintf(&b, "getPool(\"\"):setCache(newPacketCache(%d, {maxTTL=86400, minTTL=0, staleTTL=86400}))\n", cacheEntries)
	}
	path := filepath.Join(e.dir, "dnsdist", "dnsdist.conf")
	if err := writeFile(path, b.String()); err != nil {
		return nil, err
	}
	return []string{"dnsdist", "--supervised", "--disable-syslog", "-C", path}, nil
}

// dnsmasqArgv: --all-servers races every upstream like Spartan races two;
// no /etc files read. --dns-forward-max matches Spartan's handler_limit
// (1024) instead of dnsmasq's 150, which would otherwise shed load at
// saturation for a reason unrelated to forwarding speed. Cache off for the
// miss path; on, with stale answers (--use-stale-cache: given at once,
// refreshed behind), for the cache scenarios.
func dnsmasqArgv(e *rowEnv, r *row) ([]string, error) {
	cache := []string{"--cache-size=0"}
	if e.cache {
		cache = []string{"--cache-size=" + strconv.Itoa(cacheEntries), "--use-stale-cache"}
	}
	argv := []string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
		"--all-servers", "--dns-forward-max=1024",
		"--listen-address=" + r.ip, "--bind-interfaces", "--port=" + strconv.Itoa(e.listenPort),
		"--pid-file=" + filepath.Join(e.dir, "dnsmasq.pid"), "--user=root"}
	argv = append(argv, cache...)
	for _, u := range e.upstreams {
		host, port, _ := net.SplitHostPort(u)
		argv = append(argv, "--server="+host+"#"+port)
	}
	return argv, nil
}

// unboundArgv: Unbound forwarding everything to the three upstreams (no
// recursion, no DNSSEC validation: the zone is unsigned and has no trust
// anchor; "test." is one of the zones Unbound answers NXDOMAIN for itself
// unless told otherwise), with RFC 8767 serve-expired as its manual
// recommends it (wait up to 1.8 s for a refresh, then the stale answer)
// and prefetch. One thread per core, like the other rows that use every
// core.
func unboundArgv(e *rowEnv, r *row) ([]string, error) {
	dir := filepath.Join(e.dir, r.name)
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	interface: %s@%d
	port: %d
	do-ip6: no
	num-threads: %d
	username: ""
	chroot: ""
	directory: "%s"
	pidfile: "%s/unbound.pid"
	use-syslog: no
	logfile: ""
	verbosity: 0
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	module-config: "iterator"
	local-zone: "test." nodefault
	msg-cache-size: 16m
	rrset-cache-size: 32m
	prefetch: yes
	serve-expired: yes
	serve-expired-ttl: 86400
	serve-expired-reply-ttl: 30
	serve-expired-client-timeout: 1800
remote-control:
	control-enable: no
forward-zone:
	name: "."
`, r.ip, e.listenPort, e.listenPort, runtime.NumCPU(), dir, dir)
	for _, u := range r.upstreams(e) {
		host, port, _ := net.SplitHostPort(u)
		fmt.Fprintf(&b, "\tforward-addr: %s@%s\n", host, port)
	}
	path := filepath.Join(dir, "unbound.conf")
	if err := writeFile(path, b.String()); err != nil {
		return nil, err
	}
	return []string{"unbound", "-d", "-c", path}, nil
}

// forwarder is one running row process.
type forwarder struct {
	row  *row
	proc *proc
}

// startRow launches row r and waits until it answers for the zone.
func startRow(e *rowEnv, r *row) (*forwarder, error) {
	argv, err := r.argv(e, r)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(e.dir, r.name+".log")
	p, err := startProc(r.name, logPath, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitDNS(r.addr(e), zoneName, 15*time.Second, p); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not come up: %w; log tail: %s", r.name, err, tail(logPath, 400))
	}
	return &forwarder{row: r, proc: p}, nil
}

func fileExec(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("missing: %s not found", path)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("missing: %s is not executable", path)
	}
	return nil
}

func onPath(name string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("missing: %s not on PATH", name)
	}
	return nil
}

// tail returns the last n bytes of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
