package sysd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/testkit"

	"github.com/spartan-dns/spartan/supervisor"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// service is one Spartan under a Manager, with its config file and the
// upstreams it forwards to.
type service struct {
	m        *Manager
	addr     netip.AddrPort
	http     string
	cfgPath  string
	ctl      string
	ctlBin   string
	cfg      map[string]any
	upA, upB *dnstest.Upstream
}

// newService writes a config for a daemon on a free loopback address that
// forwards example.com to upstream A (10.0.0.1) and starts it. activated
// false runs it the way today's unit does: no sockets handed to it.
func newService(t *testing.T, activated bool, args ...string) *service {
	t.Helper()
	bin, ctlBin := harness.Build(t)
	dir := t.TempDir()
	ip, port := testkit.FreeAddr(t)
	s := &service{
		addr:   netip.AddrPortFrom(ip, uint16(port)),
		http:   netip.AddrPortFrom(ip, uint16(testkit.FreePort(t, ip, "tcp"))).String(),
		ctl:    filepath.Join(dir, "ctl.sock"),
		ctlBin: ctlBin,
		upA:    dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.1")),
		upB:    dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.2")),
	}
	s.cfgPath = filepath.Join(dir, "spartan.json")
	s.cfg = map[string]any{
		"bind_ips":           []string{ip.String()},
		"udp_port":           port,
		"tcp_port":           port,
		"interface":          map[string]any{"manage": false, "name": "spartan"},
		"http_listen":        s.http,
		"ctl_socket":         s.ctl,
		"master_source":      "none",
		"upstream_resolvers": []string{s.upA.Addr.String()},
	}
	s.write(t, s.cfg)
	sock := s.addr
	if !activated {
		sock = netip.AddrPort{}
	}
	s.m = NewManager(t, dir, sock, bin, append([]string{"-config", s.cfgPath, "-reload-timeout", "10s"}, args...)...)
	s.m.Start(t)
	return s
}

func (s *service) write(t *testing.T, cfg map[string]any) {
	t.Helper()
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(s.cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *service) load(t *testing.T) *Load {
	t.Helper()
	l, err := StartLoad(LoadOptions{
		Addr:       s.addr,
		Names:      []string{"www.example.com.", "ready.spartan.", "a.example.com.", "localhost."},
		UDPRate:    2000,
		UDPSockets: 4,
		TCPClients: 2,
		TCPRate:    100,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func report(t *testing.T, what string, r Report) {
	t.Logf("%s: sent %d, answered %d, lost %d, late (>3s) %d, TCP resent after a close %d; p50 %v p99 %v p99.9 %v max %v",
		what, r.Sent, r.Answered, r.Lost, r.Late, r.TCPResent,
		r.Quantile(0.5), r.Quantile(0.99), r.Quantile(0.999), r.Quantile(1))
}

// metric scrapes one sample from the daemon's /metrics.
func (s *service) metric(t *testing.T, name string) float64 {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 50 {
		resp, err := c.Get("http://" + s.http + "/metrics")
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
					resp.Body.Close()
					v, _ := strconv.ParseFloat(f[1], 64)
					return v
				}
			}
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s in /metrics at %s", name, s.http)
	return 0
}

// quiet returns the main process's open fds and goroutines once they have
// not changed for 2.1 s (idle upstream sockets are trimmed within two of
// the loops' 1 s trim periods after the load stops).
func (s *service) quiet(t *testing.T) (fds, goroutines int) {
	t.Helper()
	pid := s.m.Main()
	prevF, prevG, same := -1, -1, 0
	for range 60 {
		f, g := harness.OpenFDs(pid), int(s.metric(t, "go_goroutines"))
		if f == prevF && g == prevG {
			if same++; same == 3 {
				return f, g
			}
		} else {
			same = 0
		}
		prevF, prevG = f, g
		time.Sleep(700 * time.Millisecond)
	}
	return prevF, prevG
}

// tree checks that the tree of the main process is complete and running.
func (s *service) tree(t *testing.T) {
	t.Helper()
	want := []string{"/spartan/state/config", "/spartan/dns/udp-" + s.addr.Addr().String(), "/spartan/dns/tcp-" + s.addr.Addr().String(),
		"/spartan/node/watchdog", "/spartan/api/ctl", "/spartan/api/http"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command(s.ctlBin, "-socket", s.ctl, "tree", "--json").CombinedOutput()
		var root supervisor.Node
		missing := []string{}
		if err == nil && json.Unmarshal(out, &root) == nil {
			got := map[string]string{}
			var walk func(n supervisor.Node)
			walk = func(n supervisor.Node) {
				got[n.Path] = n.State
				for _, c := range n.Children {
					walk(c)
				}
			}
			walk(root)
			for _, p := range want {
				if got[p] != supervisor.StateRunning {
					missing = append(missing, p+"="+got[p])
				}
			}
			if len(missing) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("spartanctl tree of pid %d incomplete: %v %v\n%s", s.m.Main(), err, missing, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Today's unit (no socket activation): every restart loses the queries
// sent while no process holds the port. This is the baseline, and the
// proof that the load detects losses.
func TestPlainRestartLosesQueries(t *testing.T) {
	s := newService(t, false)
	l := s.load(t)
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		s.m.Cycle(t, syscall.SIGTERM)
	}
	time.Sleep(500 * time.Millisecond)
	r := l.Stop()
	report(t, "before: 3 restarts (SIGTERM) without socket activation", r)
	if r.Lost == 0 {
		t.Fatal("no query lost across plain restarts: the load cannot see losses")
	}
}

// Socket activation: the sockets outlive the process, so a clean restart
// loses nothing; a SIGKILL loses at most what was in flight.
func TestRestartsWithSocketActivation(t *testing.T) {
	s := newService(t, true)
	l := s.load(t)
	for range 10 {
		time.Sleep(500 * time.Millisecond)
		if ex := s.m.Cycle(t, syscall.SIGTERM); ex.Status.ExitStatus() != 0 {
			t.Errorf("pid %d exited %v after SIGTERM", ex.PID, ex.Status)
		}
	}
	time.Sleep(500 * time.Millisecond)
	r := l.Stop()
	report(t, "10 restarts (SIGTERM) with socket activation", r)
	if r.Lost != 0 || r.Answered == 0 {
		t.Errorf("lost %d queries across clean restarts, want 0", r.Lost)
	}

	l = s.load(t)
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		if ex := s.m.Cycle(t, syscall.SIGKILL); ex.Status.Signal() != syscall.SIGKILL {
			t.Errorf("pid %d: %v, want killed", ex.PID, ex.Status)
		}
	}
	time.Sleep(500 * time.Millisecond)
	r = l.Stop()
	report(t, "3 restarts (SIGKILL) with socket activation", r)
	// Only what the killed process had read and not answered may be lost:
	// at 2200 qps and sub-millisecond answers, a handful per kill.
	if r.Lost > 3*50 {
		t.Errorf("lost %d queries over 3 SIGKILLs: more than what can be in flight", r.Lost)
	}
	if starts, _, rejected := s.m.Stats(); starts != 14 || rejected != 0 {
		t.Errorf("starts %d (want 14), notifications from non-main processes %d (want 0)", starts, rejected)
	}
	s.tree(t)
}

// SIGHUP starts the binary afresh with the sockets; the old process stops
// only once the new one serves. An invalid config leaves the old one
// serving, with nothing leaked; a new upstream_resolvers takes effect.
func TestReloadsUnderLoad(t *testing.T) {
	s := newService(t, true)
	baseF, baseG := s.quiet(t)
	t.Logf("first process: %s", fdList(s.m.Main()))

	// A failed reload, quiet: the old process keeps serving and is back to
	// exactly its descriptors and goroutines.
	bad := map[string]any{}
	for k, v := range s.cfg {
		bad[k] = v
	}
	bad["upstream_timeot"] = "1s"
	s.write(t, bad)
	before, after := s.m.Reload(t)
	if before != after {
		t.Fatalf("reload with an invalid config replaced pid %d by %d", before, after)
	}
	if f, g := s.quiet(t); f != baseF || g != baseG {
		t.Errorf("after a failed reload: %d fds, %d goroutines; before %d, %d", f, g, baseF, baseG)
	}
	if v := s.metric(t, `spartan_reloads_total{result="failed"}`); v != 1 {
		t.Errorf(`spartan_reloads_total{result="failed"} = %v, want 1`, v)
	}
	if !strings.Contains(s.m.LogTail(200), "upstream_timeot") {
		t.Errorf("the failed reload does not name the key; log:\n%s", s.m.LogTail(30))
	}

	s.write(t, s.cfg)
	l := s.load(t)
	for i := range 20 {
		time.Sleep(400 * time.Millisecond)
		cfg := s.cfg
		switch i {
		case 6:
			cfg = bad
		case 13:
			next := map[string]any{}
			for k, v := range s.cfg {
				next[k] = v
			}
			next["upstream_resolvers"] = []string{s.upB.Addr.String()}
			s.cfg = next
			cfg = next
		}
		s.write(t, cfg)
		before, after := s.m.Reload(t)
		if cfg["upstream_timeot"] != nil {
			if before != after {
				t.Fatalf("reload %d with an invalid config replaced pid %d by %d", i, before, after)
			}
			s.write(t, s.cfg)
			continue
		}
		if before == after {
			t.Fatalf("reload %d: pid %d still main; log:\n%s", i, before, s.m.LogTail(30))
		}
		if ex := s.m.WaitExit(t, before, 20*time.Second); ex.Status.ExitStatus() != 0 {
			t.Errorf("old pid %d exited %v", before, ex.Status)
		}
		if i == 13 {
			l.Mark() // from now on, every answer comes from upstream B
		}
	}
	time.Sleep(500 * time.Millisecond)
	r := l.Stop()
	report(t, "20 reloads (SIGHUP), one with an invalid config", r)
	t.Logf("lost by transport: UDP %d, TCP %d", r.UDPLost, r.TCPLost)
	if r.Lost != 0 || r.Answered == 0 {
		t.Errorf("lost %d queries across reloads, want 0", r.Lost)
	}
	if r.Answers["10.0.0.1"] != 0 || r.Answers["10.0.0.2"] == 0 {
		t.Errorf("after the upstream change: answers %v, want only 10.0.0.2", r.Answers)
	}
	if starts, exits, rejected := s.m.Stats(); starts != 1 || rejected != 0 {
		t.Errorf("starts %d (want 1: reloads are no restarts), rejected notifications %d; exits %v", starts, rejected, exits)
	}
	s.tree(t)
	if f, g := s.quiet(t); f > baseF+2 || g > baseG+2 {
		t.Errorf("the process after 19 hand-overs: %d fds, %d goroutines; the first had %d, %d\n%s", f, g, baseF, baseG, fdList(s.m.Main()))
	}
}

// fdList describes the open descriptors of pid (for failure messages).
func fdList(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"->"+l)
	}
	return strings.Join(out, " ")
}

// A new process that is not serving within -reload-timeout is stopped and
// the old one keeps serving, under load, losing nothing.
func TestReloadTimeoutKeepsOldServing(t *testing.T) {
	s := newService(t, true, "-reload-timeout", "1ms") // the later flag wins
	l := s.load(t)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		if before, after := s.m.Reload(t); before != after {
			t.Fatalf("a reload that timed out replaced pid %d by %d", before, after)
		}
	}
	time.Sleep(300 * time.Millisecond)
	r := l.Stop()
	report(t, "3 reloads whose new process timed out", r)
	if r.Lost != 0 {
		t.Errorf("lost %d queries", r.Lost)
	}
	if v := s.metric(t, `spartan_reloads_total{result="failed"}`); v != 3 {
		t.Errorf(`spartan_reloads_total{result="failed"} = %v, want 3`, v)
	}
	if !strings.Contains(s.m.LogTail(400), "not serving after 1ms") {
		t.Errorf("the log does not say why the reload failed:\n%s", s.m.LogTail(30))
	}
}

// `spartanctl reload` (the unit's ExecReload) does what SIGHUP does and
// returns only when it is over: 0 once the new process serves (it is the
// main process by then, and the old one exits), 1 with the reason when the
// old one keeps serving. No query is lost either way.
func TestReloadByControlSocket(t *testing.T) {
	s := newService(t, true)
	l := s.load(t)
	ctlReload := func() (string, int) {
		out, err := exec.Command(s.ctlBin, "-socket", s.ctl, "reload").CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("spartanctl reload: %v", err)
		}
		return strings.TrimSpace(string(out)), code
	}
	for i := range 3 {
		time.Sleep(300 * time.Millisecond)
		before := s.m.Main()
		out, code := ctlReload()
		var pid int
		if _, err := fmt.Sscanf(out, "reloaded: process %d serves", &pid); err != nil || code != 0 || pid == before {
			t.Fatalf("reload %d: exit %d, %q (main was %d)", i, code, out, before)
		}
		// The hand-over (MAINPID=pid) was sent before the answer.
		if got, ok := s.m.waitFor(time.Second, func() bool { return s.m.main == pid }); !ok {
			t.Fatalf("reload %d: spartanctl says %d serves, the manager's main is %d", i, pid, got)
		}
		if ex := s.m.WaitExit(t, before, 20*time.Second); ex.Status.ExitStatus() != 0 {
			t.Errorf("old pid %d exited %v", before, ex.Status)
		}
	}
	bad := map[string]any{}
	for k, v := range s.cfg {
		bad[k] = v
	}
	bad["upstream_timeot"] = "1s"
	s.write(t, bad)
	before := s.m.Main()
	out, code := ctlReload()
	if code != 1 || !strings.Contains(out, "exit status 2") || s.m.Main() != before {
		t.Errorf("reload with an invalid config: exit %d, %q, main %d -> %d; want exit 1 naming the new process's exit 2, main unchanged", code, out, before, s.m.Main())
	}
	s.write(t, s.cfg)
	time.Sleep(300 * time.Millisecond)
	r := l.Stop()
	report(t, "3 reloads by spartanctl reload, one failed", r)
	if r.Lost != 0 || r.Answered == 0 {
		t.Errorf("lost %d queries across reloads, want 0", r.Lost)
	}
	if v := s.metric(t, `spartan_reloads_total{result="failed"}`); v != 1 {
		t.Errorf(`spartan_reloads_total{result="failed"} = %v, want 1`, v)
	}
}

// A reload carries the answer cache over to the new process: with its
// upstream silent, the new process still answers the names the old one had
// cached, from the cache, at once. A reload that changes the routing starts
// with an empty cache, and the names go to the new upstream.
func TestReloadKeepsCache(t *testing.T) {
	s := newService(t, true)
	names := []string{"www.example.com.", "a.example.com."}
	answer := func(name string) (string, error) {
		r, err := harness.Query(s.addr, name, dns.TypeA, false, time.Second)
		if err != nil {
			return "", err
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			return "", fmt.Errorf("%s: %s with %d answers", name, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return r.Answer[0].(*dns.A).A.String(), nil
	}
	for _, n := range names {
		if ip, err := answer(n); err != nil || ip != "10.0.0.1" {
			t.Fatalf("premise: %s = %q (%v), want 10.0.0.1 from upstream A", n, ip, err)
		}
	}
	s.upA.SetHandler(dnstest.Silent())
	// Each reload: wait for the old process to be gone, or it may be the
	// one that answers (the processes share the sockets for a moment).
	reload := func() {
		t.Helper()
		before, after := s.m.Reload(t)
		if before == after {
			t.Fatalf("reload did not hand over (pid %d)", before)
		}
		s.m.WaitExit(t, before, 20*time.Second)
	}
	reload()
	seen := s.upA.Count()
	for _, n := range names {
		if ip, err := answer(n); err != nil || ip != "10.0.0.1" {
			t.Errorf("after the reload, upstream silent: %s = %q (%v), want 10.0.0.1 from the cache", n, ip, err)
		}
	}
	if got := s.upA.Count(); got != seen {
		t.Errorf("%d queries reached the upstream after the reload: the answers did not come from the cache", got-seen)
	}
	if v := s.metric(t, "spartan_cache_entries"); v != float64(len(names)) {
		t.Errorf("spartan_cache_entries = %v in the new process, want %d", v, len(names))
	}
	if !strings.Contains(s.m.LogTail(200), `"entries":2,`) {
		t.Errorf("the log does not count the entries handed over:\n%s", s.m.LogTail(30))
	}

	moved := map[string]any{}
	for k, v := range s.cfg {
		moved[k] = v
	}
	moved["upstream_resolvers"] = []string{s.upB.Addr.String()}
	s.write(t, moved)
	reload()
	if ip, err := answer(names[0]); err != nil || ip != "10.0.0.2" {
		t.Errorf("after a reload to upstream B: %s = %q (%v), want 10.0.0.2 (the old cache must not be carried over)", names[0], ip, err)
	}
	if !strings.Contains(s.m.LogTail(200), "routing config changed") {
		t.Errorf("the log does not say why the cache was not taken over:\n%s", s.m.LogTail(30))
	}
}
