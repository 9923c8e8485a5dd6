package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/netns"
	"github.com/spartan-dns/spartan/test/testkit"
)

var bindIPs = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}

// startDaemon runs spartan through the harness, inside n when n is not nil,
// with cfg over the harness defaults. The daemon may exit non-zero by
// itself (TestDaemonWatchdogExit); the tests check its exit code where it
// matters.
func startDaemon(t *testing.T, n *netns.NS, cfg map[string]any, env ...string) *harness.Spartan {
	t.Helper()
	return harness.Start(t, harness.Options{NS: n, Config: cfg, Env: env, LogLevel: "debug", AnyExit: true})
}

// ctl runs spartanctl, inside n when n is not nil, and returns its combined
// output and exit code.
func ctl(t *testing.T, n *netns.NS, env []string, args ...string) (string, int) {
	t.Helper()
	_, ctlBin := harness.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if n != nil {
		cmd = n.Command(ctx, ctlBin, args...)
	} else {
		cmd = exec.CommandContext(ctx, ctlBin, args...)
	}
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("spartanctl %v: %v", args, err)
	}
	return string(out), 0
}

// waitCheck waits until `spartanctl check -addr addr` passes (inside n).
func waitCheck(t *testing.T, n *netns.NS, d *harness.Spartan, addr string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		out, code := ctl(t, n, nil, "check", "-addr", addr, "-timeout", "300ms")
		if code == 0 {
			return time.Since(start)
		}
		if d != nil && d.Exited() {
			t.Fatalf("spartan exited %d; last check: %s", d.Wait(0), out)
		}
		if time.Since(start) > limit {
			t.Fatalf("spartanctl check -addr %s still failing after %v: %s", addr, limit, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dummySupported(t *testing.T, n *netns.NS) bool {
	if _, err := n.Run("ip", "link", "add", "probe0", "type", "dummy"); err != nil {
		return false
	}
	n.MustRun(t, "ip", "link", "del", "probe0")
	return true
}

func linkHealthy(h *netlink.Handle, name string) (bool, string) {
	link, err := h.LinkByName(name)
	if err != nil {
		return false, "no link"
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return false, "down"
	}
	list, _ := h.AddrList(link, netlink.FAMILY_V4)
	have := map[string]bool{}
	for _, a := range list {
		have[a.IPNet.String()] = true
	}
	for _, ip := range bindIPs {
		if !have[ip+"/32"] {
			return false, fmt.Sprintf("addresses %v", have)
		}
	}
	return true, link.Type()
}

func waitLink(t *testing.T, h *netlink.Handle, limit time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	for {
		ok, why := linkHealthy(h, "spartan")
		if ok {
			return time.Since(start), why
		}
		if time.Since(start) > limit {
			t.Fatalf("link spartan not healthy within %v: %s", limit, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func nameservers(data string) []string {
	var ns []string
	for _, line := range strings.Split(data, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
			ns = append(ns, f[1])
		}
	}
	return ns
}

// TestDaemonInNamespace runs the real daemon in a fresh namespace on the
// default bind IPs and port 53 with the interface managed, then checks the
// link, its repair, the check command, genresolv through a bind-mounted
// resolv.conf, and glibc resolving through the result.
func TestDaemonInNamespace(t *testing.T) {
	n := netns.New(t, "node")
	hasDummy := dummySupported(t, n)
	h, err := netlink.NewHandleAt(n.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// Before anything runs under `ip netns exec`, so every such command
	// sees it bind-mounted over /etc/resolv.conf.
	resolv := n.EtcPath(t, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	upstreams := filepath.Join(t.TempDir(), "upstreams.conf")

	d := startDaemon(t, n, map[string]any{
		"bind_ips":  bindIPs,
		"udp_port":  53,
		"tcp_port":  53,
		"interface": map[string]any{"manage": true, "name": "spartan"},
	})
	took := waitCheck(t, n, d, "198.51.100.1", 15*time.Second)
	t.Logf("daemon answering ready.spartan over UDP and TCP %v after start", took)
	for _, ip := range bindIPs[1:] {
		waitCheck(t, n, d, ip, 5*time.Second)
	}

	t.Run("link kind and addresses", func(t *testing.T) {
		_, kind := waitLink(t, h, time.Second)
		want := "ifb"
		if hasDummy {
			want = "dummy"
		}
		if kind != want {
			t.Fatalf("link kind %q, want %q (dummy supported: %v)", kind, want, hasDummy)
		}
		if !strings.Contains(d.Log(), `"kind":"`+want+`"`) {
			t.Fatalf("daemon log does not say the link kind %q", want)
		}
	})
	t.Run("deleted link back within 1s and serving", func(t *testing.T) {
		n.MustRun(t, "ip", "link", "del", "spartan")
		took, _ := waitLink(t, h, time.Second)
		t.Logf("link back in %v", took)
		t.Logf("ready.spartan answered again %v later", waitCheck(t, n, d, "198.51.100.1", 5*time.Second))
		for _, ip := range bindIPs[1:] { // every bind IP serves again, UDP and TCP
			waitCheck(t, n, d, ip, 5*time.Second)
		}
	})
	t.Run("deleted address back within 1s", func(t *testing.T) {
		n.MustRun(t, "ip", "addr", "del", "198.51.100.2/32", "dev", "spartan")
		took, _ := waitLink(t, h, time.Second)
		t.Logf("address back in %v", took)
		waitCheck(t, n, d, "198.51.100.2", 5*time.Second)
	})
	t.Run("check exit codes", func(t *testing.T) {
		if out, code := ctl(t, n, nil, "check", "-addr", "198.51.100.1"); code != 0 {
			t.Fatalf("check = %d: %s", code, out)
		}
		// Port 54: nothing listens, both transports fail and are named.
		out, code := ctl(t, n, nil, "check", "-addr", "198.51.100.1:54", "-timeout", "300ms")
		if code != 1 || !strings.Contains(out, "udp") || !strings.Contains(out, "tcp") {
			t.Fatalf("check on a dead port = %d: %s", code, out)
		}
		if out, code := ctl(t, n, nil, "check", "-addr", "x"); code != 2 {
			t.Fatalf("check -addr x = %d: %s", code, out)
		}
	})
	t.Run("genresolv through the bind mount, then getent", func(t *testing.T) {
		before := inode(t, resolv)
		// Inside `ip netns exec`, /etc/resolv.conf is a bind mount of
		// resolv: rename onto it fails with EBUSY and genresolv must write
		// in place, which is what lands in resolv.
		out, code := ctl(t, n, nil, "genresolv", "-config", d.ConfigPath, "-upstreams", upstreams, "-search", "example.test", "/etc/resolv.conf")
		if code != 0 {
			t.Fatalf("genresolv = %d: %s", code, out)
		}
		// The host's resolver, saved before the rewrite.
		if saved, _ := os.ReadFile(upstreams); !slices.Equal(nameservers(string(saved)), []string{"192.0.2.1"}) {
			t.Fatalf("upstreams file %s:\n%s", upstreams, saved)
		}
		data, _ := os.ReadFile(resolv)
		if got := nameservers(string(data)); !slices.Equal(got, bindIPs) {
			t.Fatalf("nameservers %v, want %v:\n%s", got, bindIPs, data)
		}
		if !strings.Contains(string(data), "\nsearch example.test\n") || !strings.Contains(string(data), "options timeout:1") {
			t.Fatalf("resolv.conf:\n%s", data)
		}
		if inode(t, resolv) != before {
			t.Fatal("inode changed: the EBUSY in-place path was not taken")
		}
		got := n.MustRun(t, "getent", "hosts", "ready.spartan")
		if f := strings.Fields(got); len(f) < 2 || f[0] != "127.0.0.1" {
			t.Fatalf("getent hosts ready.spartan = %q, want 127.0.0.1", got)
		}
		got = n.MustRun(t, "getent", "ahostsv4", "ns.spartan")
		if f := strings.Fields(got); len(f) < 1 || f[0] != "198.51.100.1" {
			t.Fatalf("getent ahostsv4 ns.spartan = %q, want 198.51.100.1", got)
		}
	})
	t.Run("genresolv falls back when spartan is down", func(t *testing.T) {
		if code := d.Stop(); code != 0 {
			t.Fatalf("spartan exited %d on SIGTERM", code)
		}
		out, code := ctl(t, n, []string{"RESOLVERS=192.0.2.7,192.0.2.8:5353"}, "genresolv", "-config", d.ConfigPath, "-upstreams", upstreams, "/etc/resolv.conf")
		if code != 0 {
			t.Fatalf("genresolv = %d: %s", code, out)
		}
		data, _ := os.ReadFile(resolv)
		if got := nameservers(string(data)); !slices.Equal(got, []string{"192.0.2.7"}) {
			t.Fatalf("nameservers %v, want [192.0.2.7]:\n%s", got, data)
		}
	})
}

// TestDaemonNotify: the real daemon under a fake service manager sends
// READY=1 once and WATCHDOG=1 after each passing check.
func TestDaemonNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ip, port := testkit.FreeAddr(t)
	d := startDaemon(t, nil, map[string]any{
		"bind_ips":  []string{ip.String()},
		"udp_port":  port,
		"tcp_port":  port,
		"interface": map[string]any{"manage": false, "name": "spartan"},
		"watchdog":  map[string]any{"interval": "200ms", "grace": "10s"},
	}, "NOTIFY_SOCKET="+sock)

	var got []string
	buf := make([]byte, 512)
	deadline := time.Now().Add(10 * time.Second)
	for countOf(got, "WATCHDOG=1") < 3 {
		_ = conn.SetReadDeadline(deadline)
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("NOTIFY_SOCKET: got %q, then %v (is the watchdog actor wired into cmd/spartan?)", got, err)
		}
		// One datagram may carry several newline-separated assignments.
		got = append(got, strings.Split(strings.TrimSpace(string(buf[:k])), "\n")...)
	}
	if countOf(got, "READY=1") != 1 {
		t.Fatalf("READY=1 sent %d times: %q", countOf(got, "READY=1"), got)
	}
	if i, j := slices.Index(got, "READY=1"), slices.Index(got, "WATCHDOG=1"); i < 0 || i > j {
		t.Fatalf("READY=1 must come first: %q", got)
	}
	// It was really serving when it said READY.
	if out, code := ctl(t, nil, nil, "check", "-addr", netip.AddrPortFrom(ip, uint16(port)).String()); code != 0 {
		t.Fatalf("check after READY=1: %s", out)
	}
	if code := d.Stop(); code != 0 {
		t.Fatalf("exit %d on SIGTERM", code)
	}
}

func countOf(ss []string, s string) int {
	c := 0
	for _, x := range ss {
		if x == s {
			c++
		}
	}
	return c
}

// TestDaemonWatchdogExit: when its bind IP disappears for good (unmanaged
// interface, address removed), the daemon's own probe fails and the process
// exits non-zero once the grace period is over, not before.
func TestDaemonWatchdogExit(t *testing.T) {
	n := netns.New(t, "wdexit")
	n.MustRun(t, "ip", "link", "add", "spartan", "type", "ifb")
	n.MustRun(t, "ip", "addr", "add", "198.51.100.1/32", "dev", "spartan")
	n.MustRun(t, "ip", "link", "set", "spartan", "up")
	const grace = 2 * time.Second
	d := startDaemon(t, n, map[string]any{
		"bind_ips":  []string{"198.51.100.1"},
		"udp_port":  53,
		"tcp_port":  53,
		"interface": map[string]any{"manage": false, "name": "spartan"},
		"watchdog":  map[string]any{"interval": "200ms", "grace": grace.String()},
	})
	waitCheck(t, n, d, "198.51.100.1", 15*time.Second)
	// Let the daemon's watchdog see a pass first.
	time.Sleep(500 * time.Millisecond)
	n.MustRun(t, "ip", "addr", "del", "198.51.100.1/32", "dev", "spartan")
	removed := time.Now()
	code := d.Wait(grace + 10*time.Second)
	if code == -1 {
		t.Fatalf("still running %v after its address went away (grace %v)", time.Since(removed), grace)
	}
	took := time.Since(removed)
	t.Logf("exited %d after %v (grace %v)", code, took, grace)
	if code == 0 {
		t.Fatal("exit code 0: a service manager would not treat this as a failure")
	}
	if took < grace-100*time.Millisecond {
		t.Fatalf("exited after %v, before the grace period %v was over", took, grace)
	}
}
