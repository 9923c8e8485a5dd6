// Package netns gives tests a private network namespace: created with
// `ip netns add` under a unique name, loopback up, removed at t.Cleanup.
// Work happens inside it either in-process (Do, on a locked OS thread) or
// in a subprocess (Command, through `ip netns exec`).
//
// Everything here needs root and iproute2. Require fails the test when
// CI=true and skips it otherwise, as the project's test rules ask.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// NS is one test-owned network namespace.
type NS struct {
	Name   string
	handle vnetns.NsHandle
}

// Require stops the test unless it runs as root with `ip` on PATH: a
// failure under CI=true (the prerequisite is part of the CI contract), a
// skip elsewhere.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespace tests need root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "network namespace tests need iproute2 (ip): " + err.Error()
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// New creates a namespace named "sp-<prefix>-<random>" (prefix trimmed so
// the name stays short), brings its loopback up and removes it, with its
// /etc/netns directory, when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netns: random name: %v", err)
	}
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	name := "sp-" + prefix + "-" + hex.EncodeToString(b[:])
	if out, err := run("ip", "netns", "add", name); err != nil {
		t.Fatalf("netns: ip netns add %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, handle: vnetns.None()}
	t.Cleanup(func() { n.remove(t) })

	h, err := vnetns.GetFromName(name)
	if err != nil {
		t.Fatalf("netns: open %s: %v", name, err)
	}
	n.handle = h
	if out, err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("netns: lo up in %s: %v: %s", name, err, out)
	}
	return n
}

func (n *NS) remove(t testing.TB) {
	if n.handle.IsOpen() {
		n.handle.Close()
	}
	// A process still running inside keeps the namespace alive but not its
	// name; deleting the name is all a test can and needs to do.
	if out, err := run("ip", "netns", "del", n.Name); err != nil {
		t.Errorf("netns: ip netns del %s: %v: %s", n.Name, err, out)
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", n.Name)); err != nil {
		t.Errorf("netns: remove /etc/netns/%s: %v", n.Name, err)
	}
}

// Handle is an open handle on the namespace, valid until the test ends.
// Pass it to netlink.NewHandleAt or netlink's subscribe options to work
// inside the namespace without switching threads.
func (n *NS) Handle() vnetns.NsHandle { return n.handle }

// Do runs fn on an OS thread switched into the namespace. Goroutines fn
// starts do NOT inherit the namespace (Go starts new threads from a clean
// template thread); sockets fn opens stay in the namespace for their
// lifetime, wherever they are used later.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			// The thread is stuck in the test namespace: keep it locked so
			// the runtime destroys it when this goroutine exits instead of
			// handing it to other goroutines.
			errc <- fmt.Errorf("netns: leave %s: %w (after fn: %v)", n.Name, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Command returns `ip netns exec NAME name args...`, bound to ctx.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace with a 30 s bound and returns its
// combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	cmd := n.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, buf.String())
	}
	return buf.String(), err
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// EtcPath returns /etc/netns/NAME/file, creating the directory. `ip netns
// exec` bind-mounts each file there over /etc/file for the subprocess, which
// is how a test gives commands in the namespace their own resolv.conf. The
// directory goes away with the namespace.
func (n *NS) EtcPath(t testing.TB, file string) string {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("netns: %v", err)
	}
	return filepath.Join(dir, file)
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
