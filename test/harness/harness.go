// Package harness builds the real spartan binaries and runs them for
// end-to-end tests: each daemon gets its own loopback IP and port, a temp
// config and control socket, and is stopped (and its exit code checked) at
// test cleanup.
package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/netns"
	"github.com/spartan-dns/spartan/test/testkit"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Build compiles spartan and spartanctl once per test binary and returns
// their paths.
func Build(t testing.TB) (spartanBin, ctlBin string) {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "spartan-bin-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"spartan", "spartanctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), "./cmd/"+name)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("harness: %v", buildErr)
	}
	return filepath.Join(buildDir, "spartan"), filepath.Join(buildDir, "spartanctl")
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the spartan module")
	}
	return filepath.Dir(mod), nil
}

// Options configure one daemon.
type Options struct {
	// Config holds keys of the spartan JSON config that override the
	// harness defaults (bind_ips, ports, interface.manage=false,
	// http_listen="", a temp ctl_socket, master_source "none"); a nil
	// value removes the key, leaving the daemon's own default.
	Config map[string]any
	// HTTP gives the daemon an http_listen address on its IP.
	HTTP bool
	// Env is added to the daemon's environment.
	Env []string
	// NoWait returns as soon as the process started, without waiting for
	// ready.spartan (for tests of startup failures).
	NoWait bool
	// NS runs the daemon inside this network namespace (through `ip netns
	// exec`, so the PID is still the daemon's): its bind IPs and ports are
	// the namespace's, and Start waits for ready.spartan from inside it.
	NS *netns.NS
	// AnyExit says the test expects the daemon may exit non-zero by itself
	// (a watchdog exit): cleanup stops it but does not fail on its code.
	AnyExit bool
	// LogLevel defaults to "info".
	LogLevel string
}

// Spartan is one running daemon.
type Spartan struct {
	Addr       netip.AddrPort // UDP and TCP of the first bind IP
	Cmd        *exec.Cmd
	ConfigPath string
	CtlSocket  string
	HTTPAddr   string // "" unless Options.HTTP
	CtlBin     string
	log        *testkit.SyncBuffer
	done       chan struct{}
	stopOnce   sync.Once
	exitCode   int
}

// Start runs a daemon and waits until it answers ready.spartan.
func Start(t testing.TB, opt Options) *Spartan {
	t.Helper()
	bin, ctl := Build(t)
	dir := t.TempDir()
	ip, port := testkit.FreeAddr(t)
	cfg := map[string]any{
		"bind_ips":           []string{ip.String()},
		"udp_port":           port,
		"tcp_port":           port,
		"interface":          map[string]any{"manage": false, "name": "spartan"},
		"http_listen":        "",
		"ctl_socket":         filepath.Join(dir, "ctl", "spartanctl.sock"),
		"master_source":      "none",
		"upstream_resolvers": []string{"127.0.0.1:1"}, // never the host's resolver
	}
	s := &Spartan{CtlBin: ctl, done: make(chan struct{}), log: &testkit.SyncBuffer{}}
	if opt.HTTP {
		cfg["http_listen"] = netip.AddrPortFrom(ip, uint16(testkit.FreePort(t, ip, "tcp"))).String()
	}
	for k, v := range opt.Config {
		if v == nil {
			delete(cfg, k) // the daemon's own default
			continue
		}
		cfg[k] = v
	}
	if ips, ok := cfg["bind_ips"].([]string); ok && len(ips) > 0 {
		ip = netip.MustParseAddr(ips[0])
	}
	if p, ok := cfg["udp_port"].(int); ok {
		port = p
	}
	s.Addr = netip.AddrPortFrom(ip, uint16(port))
	s.CtlSocket, _ = cfg["ctl_socket"].(string)
	s.HTTPAddr, _ = cfg["http_listen"].(string)

	s.ConfigPath = filepath.Join(dir, "spartan.json")
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(s.ConfigPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	level := opt.LogLevel
	if level == "" {
		level = "info"
	}
	argv := []string{bin, "-config", s.ConfigPath, "-log-level", level}
	if opt.NS != nil {
		argv = append([]string{"ip", "netns", "exec", opt.NS.Name}, argv...)
	}
	s.Cmd = exec.Command(argv[0], argv[1:]...)
	s.Cmd.Env = append(os.Environ(), opt.Env...)
	s.Cmd.Stdout = s.log
	s.Cmd.Stderr = s.log
	if err := s.Cmd.Start(); err != nil {
		t.Fatalf("start spartan: %v", err)
	}
	go func() {
		err := s.Cmd.Wait()
		s.exitCode = exitCode(err)
		close(s.done)
	}()
	t.Cleanup(func() {
		if code := s.Stop(); code != 0 && !opt.AnyExit {
			t.Errorf("spartan exited %d at cleanup; log tail:\n%s", code, s.LogTail(30))
		} else if t.Failed() { // the test's own failure: its daemon's side of the story
			t.Logf("spartan log tail:\n%s", s.LogTail(40))
		}
	})
	if opt.NoWait {
		return s
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if s.Exited() {
			t.Fatalf("spartan exited %d during startup; log:\n%s", s.exitCode, s.LogTail(40))
		}
		if s.ready(opt.NS) == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("spartan did not answer ready.spartan on %s within 15s; log:\n%s", s.Addr, s.LogTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready asks ready.spartan once, from inside ns when it is set (a socket
// opened there stays there).
func (s *Spartan) ready(ns *netns.NS) error {
	ask := func() error {
		_, err := Query(s.Addr, "ready.spartan.", dns.TypeA, false, 200*time.Millisecond)
		return err
	}
	if ns == nil {
		return ask()
	}
	return ns.Do(ask)
}

// Stop sends SIGTERM, waits up to 15 s (then SIGKILL) and returns the exit
// code. Safe to call more than once.
func (s *Spartan) Stop() int {
	s.stopOnce.Do(func() {
		if s.Exited() {
			return
		}
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.Cmd.Process.Kill()
			<-s.done
		}
	})
	<-s.done
	return s.exitCode
}

// Exited reports whether the process has exited.
func (s *Spartan) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to exit and returns its exit code, or
// -1 if it is still running.
func (s *Spartan) Wait(d time.Duration) int {
	select {
	case <-s.done:
		return s.exitCode
	case <-time.After(d):
		return -1
	}
}

// PID returns the daemon's process ID.
func (s *Spartan) PID() int { return s.Cmd.Process.Pid }

// Log returns everything the daemon logged so far.
func (s *Spartan) Log() string { return s.log.String() }

// LogTail returns the last n lines of the daemon's log.
func (s *Spartan) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(s.log.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Ctl runs spartanctl against this daemon's control socket.
func (s *Spartan) Ctl(args ...string) (string, error) {
	cmd := exec.Command(s.CtlBin, append([]string{"-socket", s.CtlSocket}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// Query sends one query for name/qtype to addr over UDP (or TCP) with a
// miekg/dns client and returns the reply.
func Query(addr netip.AddrPort, name string, qtype uint16, tcp bool, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Timeout: timeout}
	if tcp {
		c.Net = "tcp"
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, addr.String())
	return r, err
}

// RequireTool fails the test under CI=true when a command is missing, and
// skips it otherwise.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	Missing(t, "command %q not found (make test-deps installs it)", name)
	return ""
}

// Missing reports a missing prerequisite: fatal in CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite: "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// Dig runs dig with args and returns its output (fails the test on error).
func Dig(t testing.TB, args ...string) string {
	t.Helper()
	RequireTool(t, "dig")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// OpenFDs returns the number of open file descriptors of pid.
func OpenFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// SettledFDs waits, up to within, for pid's open descriptors to come down
// to at most limit, and returns the last count. The UDP loops keep idle
// upstream sockets for what the last second needed at its busiest
// (trimmed every second), so after a burst the count comes back within two
// trims; a leak never does.
func SettledFDs(pid, limit int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := OpenFDs(pid)
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Threads returns the number of OS threads of pid.
func Threads(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// WriteConfig writes the config at base with the keys of over replaced to
// a new file, and returns its path.
func WriteConfig(t testing.TB, base string, over map[string]any) string {
	t.Helper()
	data, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range over {
		cfg[k] = v
	}
	out, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(t.TempDir(), "spartan.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
