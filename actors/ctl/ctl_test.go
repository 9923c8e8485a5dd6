package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
	"github.com/spartan-dns/spartan/test/testkit"
)

// idle is a minimal actor: it serves until cancelled.
type idle struct{}

func (idle) Serve(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// shortDir returns a short temporary directory: unix socket paths are
// limited to 108 bytes, and t.TempDir() paths can be longer.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type fixture struct {
	tree   *supervisor.Tree
	store  *state.Store
	reg    *state.Registry
	socket string
	done   chan error
	cancel context.CancelFunc
	once   sync.Once
}

// start runs a tree shaped like Spartan's api group:
//
//	/t
//	  /t/work/a      idle actor
//	  /t/api/ctl     the control socket
func start(t *testing.T, socket string, with ...func(*Actor)) *fixture {
	t.Helper()
	f := &fixture{socket: socket, done: make(chan error, 1)}
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5301"), netip.MustParseAddrPort("127.0.0.2:5301")}
	cfg.ForwardZones = map[string][]netip.AddrPort{"example.com.": {netip.MustParseAddrPort("127.0.0.2:5301"), netip.MustParseAddrPort("127.0.0.3:53")}}
	f.reg = state.NewRegistry()
	f.store = state.NewStore(cfg, f.reg)

	opts := supervisor.Options{Timeout: time.Second, FailureBackoff: 100 * time.Millisecond, FailureThreshold: 100}
	f.tree = supervisor.New("t", opts, zerolog.Nop())
	f.tree.Root().Supervisor("work", opts).Actor("a", idle{})
	api := f.tree.Root().Supervisor("api", opts)
	a := New(socket, api.Path()+"/ctl", f.tree, f.store, zerolog.Nop())
	for _, w := range with {
		w(a)
	}
	api.Actor("ctl", a)

	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- f.tree.Serve(ctx) }()
	t.Cleanup(f.stop)
	waitFor(t, "socket up", func() bool {
		_, err := Call(context.Background(), socket, Request{Cmd: CmdTree})
		return err == nil
	})
	return f
}

func (f *fixture) stop() {
	f.once.Do(func() {
		f.cancel()
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			panic("tree did not stop")
		}
	})
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, 5*time.Second, cond)
}

func call(t *testing.T, socket string, req Request) (*Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return Call(ctx, socket, req)
}

func nodeIs(f *fixture, path, state string, restarts int) func() bool {
	return func() bool {
		n, ok := f.tree.Snapshot().Find(path)
		return ok && n.State == state && n.Restarts == restarts
	}
}

func TestTree(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	resp, err := call(t, f.socket, Request{Cmd: CmdTree})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Tree == nil || resp.Tree.Path != "/t" {
		t.Fatalf("tree root = %+v", resp.Tree)
	}
	for _, p := range []string{"/t/work", "/t/work/a", "/t/api", "/t/api/ctl"} {
		n, ok := resp.Tree.Find(p)
		if !ok {
			t.Fatalf("no %s in %+v", p, resp.Tree)
		}
		if n.State != supervisor.StateRunning {
			t.Errorf("%s state = %s", p, n.State)
		}
	}
}

func TestKill(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	tests := []struct {
		path, code string
	}{
		{"/t/work/a", ""},
		{"/t/work/a/", ""}, // trailing slash tolerated
		{"/t/nope", CodeNoSuchPath},
		{"relative", CodeBadRequest},
		{"", CodeBadRequest},
	}
	kills := 0
	for _, tc := range tests {
		waitFor(t, "a running", nodeIs(f, "/t/work/a", supervisor.StateRunning, kills))
		_, err := call(t, f.socket, Request{Cmd: CmdKill, Path: tc.path})
		var ce *Error
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("kill %q: %v", tc.path, err)
		case tc.code == "":
			kills++
		case !errors.As(err, &ce) || ce.Code != tc.code:
			t.Errorf("kill %q: err = %v, want code %s", tc.path, err, tc.code)
		}
	}
	waitFor(t, "a restarted twice", nodeIs(f, "/t/work/a", supervisor.StateRunning, 2))
}

// Killing the control socket or one of its ancestors is answered before
// the socket goes away, and the socket comes back.
func TestKillSelfAndAncestors(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	for i, p := range []string{"/t/api/ctl", "/t/api", "/t"} {
		waitFor(t, p+" running", nodeIs(f, p, supervisor.StateRunning, 0))
		if _, err := call(t, f.socket, Request{Cmd: CmdKill, Path: p}); err != nil {
			t.Fatalf("kill %s #%d: %v", p, i, err)
		}
		waitFor(t, p+" restarted", nodeIs(f, p, supervisor.StateRunning, 1))
		waitFor(t, "socket back", func() bool {
			_, err := call(t, f.socket, Request{Cmd: CmdTree})
			return err == nil
		})
	}
}

func TestUpstreams(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	u := f.reg.Get(netip.MustParseAddrPort("127.0.0.2:5301"))
	u.Successes.Add(100)
	u.Failures.Add(3)
	u.Stalls.Add(2)
	for range 50 {
		u.Latency.Observe(300 * time.Microsecond) // bucket (0.25ms, 0.5ms]
	}
	for range 50 {
		u.Latency.Observe(3 * time.Millisecond) // bucket (2.5ms, 5ms]
	}
	resp, err := call(t, f.socket, Request{Cmd: CmdUpstreams})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Upstream{}
	for _, e := range resp.Upstreams {
		got[e.Address] = e
	}
	if len(got) != 3 {
		t.Fatalf("upstreams = %+v, want 3", resp.Upstreams)
	}
	e := got["127.0.0.2:5301"]
	if strings.Join(e.Routes, ",") != "default,example.com." {
		t.Errorf("routes = %v", e.Routes)
	}
	if e.Successes != 100 || e.Failures != 3 || e.Stalls != 2 {
		t.Errorf("counters = %+v", e)
	}
	if math.Abs(e.LatencyMeanMs-1.65) > 0.01 {
		t.Errorf("mean = %v ms, want 1.65", e.LatencyMeanMs)
	}
	if e.LatencyP50Ms < 0.25 || e.LatencyP50Ms > 0.5 {
		t.Errorf("p50 = %v ms, want in (0.25, 0.5]", e.LatencyP50Ms)
	}
	if e.LatencyP99Ms < 2.5 || e.LatencyP99Ms > 5 {
		t.Errorf("p99 = %v ms, want in (2.5, 5]", e.LatencyP99Ms)
	}
	if z := got["127.0.0.3:53"]; strings.Join(z.Routes, ",") != "example.com." || z.LatencyMeanMs != 0 {
		t.Errorf("127.0.0.3:53 = %+v", z)
	}
}

func TestBadRequests(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	tests := []struct {
		name, send, code string
	}{
		{"not json", "hello\n", CodeBadRequest},
		{"unknown command", `{"cmd":"reboot"}` + "\n", CodeUnknownCommand},
		{"too long", `{"cmd":"` + strings.Repeat("x", MaxRequest) + `"}` + "\n", CodeBadRequest},
		{"no newline before EOF", `{"cmd":"nope"}`, CodeUnknownCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", f.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(tc.send, "\n") {
				_ = c.(*net.UnixConn).CloseWrite()
			}
			line, err := bufio.NewReader(c).ReadBytes('\n')
			if err != nil {
				t.Fatal(err)
			}
			var r Response
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			if r.OK || r.Code != tc.code || r.Error == "" {
				t.Errorf("response = %+v, want code %s", r, tc.code)
			}
		})
	}
}

// Several requests on one connection are answered in order.
func TestPipelined(t *testing.T) {
	f := start(t, filepath.Join(shortDir(t), "s.sock"))
	c, err := net.Dial("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("{\"cmd\":\"tree\"}\n\n{\"cmd\":\"upstreams\"}\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for i, want := range []string{"tree", "upstreams"} {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		var resp Response
		if err := json.Unmarshal(line, &resp); err != nil || !resp.OK {
			t.Fatalf("response %d = %s (%v)", i, line, err)
		}
		if (want == "tree") != (resp.Tree != nil) {
			t.Errorf("response %d = %s, want %s", i, line, want)
		}
	}
}

func TestSocketFile(t *testing.T) {
	dir := filepath.Join(shortDir(t), "run", "spartan")
	sock := filepath.Join(dir, "s.sock")
	// A stale socket from a dead process: bound, then its listener gone
	// without unlinking.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	f := start(t, sock)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want socket 0600", fi.Mode())
	}
	f.stop()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after stop: %v", err)
	}
	if _, err := Call(context.Background(), sock, Request{Cmd: CmdTree}); !errors.Is(err, ErrConnect) {
		t.Errorf("call after stop: %v, want ErrConnect", err)
	}

	// The directory is created when missing.
	fresh := filepath.Join(shortDir(t), "a", "b", "s.sock")
	start(t, fresh)
	if fi, err := os.Stat(filepath.Dir(fresh)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("socket dir: %v %v", fi, err)
	}
}

func TestRefusesToClobber(t *testing.T) {
	dir := shortDir(t)
	tests := []struct {
		name  string
		setup func(path string) func()
	}{
		{"regular file", func(p string) func() {
			if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i))+".sock")
			defer tc.setup(p)()
			a := New(p, "", nil, nil, zerolog.Nop())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := a.Serve(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("Serve = %v, want an immediate error", err)
			}
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("%s was removed: %v", p, err)
			}
		})
	}
}

// A socket another process serves (the process a reload replaces) is never
// clobbered: Serve waits for it to go, then takes the path over.
func TestWaitsForLiveSocket(t *testing.T) {
	p := filepath.Join(shortDir(t), "live.sock")
	other, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	a := New(p, "", nil, nil, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v while the other process still serves", err)
	case <-time.After(3 * servedPoll):
	}
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("the other process's socket was removed: %v", err)
	}
	other.Close() // unlinks p
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", p); err == nil { // the other one is closed: this is Serve
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve did not take the socket over once the other process left")
		}
		time.Sleep(servedPoll)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v", err)
	}
}

// Serve returns promptly on cancel even with clients connected and idle.
func TestServeReturnsOnCancel(t *testing.T) {
	sock := filepath.Join(shortDir(t), "s.sock")
	tr := supervisor.New("t", supervisor.Options{}, zerolog.Nop())
	a := New(sock, "", tr, state.NewStore(config.Default(), state.NewRegistry()), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	var conns []net.Conn
	waitFor(t, "clients connected", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			conns = append(conns, c)
		}
		return len(conns) == 3
	})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Serve took %v to return", d)
	}
	// The idle clients see their connection closed (EOF, not a timeout).
	for i, c := range conns {
		if _, err := testkit.WaitClosed(c, time.Second); err != nil {
			t.Errorf("client connection %d: %v", i, err)
		}
	}
}

func TestQuantile(t *testing.T) {
	cum := map[float64]uint64{1: 10, 2: 10, 4: 30, 8: 40}
	tests := []struct {
		q     float64
		count uint64
		want  float64
	}{
		{0.25, 40, 1},   // rank 10: the top of the first bucket
		{0.5, 40, 3},    // rank 20: halfway into (2, 4]
		{0.05, 40, 0.2}, // rank 2 in (0, 1]
		{0.875, 40, 6},  // rank 35: halfway into (4, 8]
		{0.99, 50, 8},   // rank 49.5: in +Inf, the highest finite bound
	}
	for _, tc := range tests {
		if got := Quantile(tc.q, cum, tc.count); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(%v, count %d) = %v, want %v", tc.q, tc.count, got, tc.want)
		}
	}
	if !math.IsNaN(Quantile(0.5, cum, 0)) {
		t.Error("Quantile of an empty histogram should be NaN")
	}
}
