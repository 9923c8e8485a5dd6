package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
		// The miss-path rows race every query, as the other rows (no cache
		// plugin) forward every one; cache rows are issue 15's bench part.
		"cache": map[string]any{"enabled": false},
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

// corednsArgv: forward plugin only, no cache plugin, default policy
// (random) and default health checking.
func corednsArgv(e *rowEnv, r *row) ([]string, error) {
	path := filepath.Join(e.dir, "coredns", "Corefile")
	conf := fmt.Sprintf(".:%d {\n\tbind %s\n\tforward . %s\n}\n", e.listenPort, r.ip, strings.Join(e.upstreams, " "))
	if err := writeFile(path, conf); err != nil {
		return nil, err
	}
	return []string{e.corednsBin, "-conf", path}, nil
}

// dnsdistArgv: no console or web server is configured, no packet cache,
// leastOutstanding policy (its default, stated for the record), security
// polling off (it would query the Internet). Health checks ask for the
// benchmark zone so NSD answers them authoritatively.
func dnsdistArgv(e *rowEnv, r *row) ([]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "setLocal(%q)\n", net.JoinHostPort(r.ip, strconv.Itoa(e.listenPort)))
	fmt.Fprintf(&b, "setSecurityPollSuffix(\"\")\n")
	fmt.Fprintf(&b, "setServerPolicy(leastOutstanding)\n")
	for _, u := range e.upstreams {
		fmt.Fprintf(&b, "newServer({address=%q, checkName=%q})\n", u, zoneName)
	}
	path := filepath.Join(e.dir, "dnsdist", "dnsdist.conf")
	if err := writeFile(path, b.String()); err != nil {
		return nil, err
	}
	return []string{"dnsdist", "--supervised", "--disable-syslog", "-C", path}, nil
}

// dnsmasqArgv: --all-servers races every upstream like Spartan races two;
// cache off; no /etc files read. --dns-forward-max matches Spartan's
// handler_limit (1024) instead of dnsmasq's 150, which would otherwise shed
// load at saturation for a reason unrelated to forwarding speed.
func dnsmasqArgv(e *rowEnv, r *row) ([]string, error) {
	argv := []string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
		"--all-servers", "--cache-size=0", "--dns-forward-max=1024",
		"--listen-address=" + r.ip, "--bind-interfaces", "--port=" + strconv.Itoa(e.listenPort),
		"--pid-file=" + filepath.Join(e.dir, "dnsmasq.pid"), "--user=root"}
	for _, u := range e.upstreams {
		host, port, _ := net.SplitHostPort(u)
		argv = append(argv, "--server="+host+"#"+port)
	}
	return argv, nil
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
