package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/fakeclock"
	"github.com/spartan-dns/spartan/test/harness"

	"github.com/rs/zerolog"
)

// testActor counts its runs and, by default, serves until its context is
// cancelled. behave, when set, replaces the default for the given run number.
type testActor struct {
	runs    atomic.Int32
	active  atomic.Int32 // Serve calls currently executing
	maxSeen atomic.Int32 // highest concurrent Serve calls seen
	behave  func(ctx context.Context, run int32) error
}

func (a *testActor) Serve(ctx context.Context) error {
	n := a.runs.Add(1)
	cur := a.active.Add(1)
	defer a.active.Add(-1)
	for {
		m := a.maxSeen.Load()
		if cur <= m || a.maxSeen.CompareAndSwap(m, cur) {
			break
		}
	}
	if a.behave != nil {
		return a.behave(ctx, n)
	}
	<-ctx.Done()
	return ctx.Err()
}

// fixture is a tree shaped like Spartan's: groups with their own budgets.
type fixture struct {
	tree   *Tree
	log    *harness.SyncBuffer
	actors map[string]*testActor // by path
	cancel context.CancelFunc
	errc   chan error

	restartsMu sync.Mutex
	restarted  []string // from OnRestart
}

func newFixture(t *testing.T, custom map[string]*testActor) *fixture {
	t.Helper()
	f := &fixture{log: &harness.SyncBuffer{}, actors: map[string]*testActor{}}
	lg := zerolog.New(f.log)
	f.tree = New("spartan", Options{Timeout: 500 * time.Millisecond, FailureBackoff: 200 * time.Millisecond}, lg)
	f.tree.OnRestart(func(p string) {
		f.restartsMu.Lock()
		f.restarted = append(f.restarted, p)
		f.restartsMu.Unlock()
	})
	actor := func(s *Sup, name string) {
		p := s.Path() + "/" + name
		a := custom[p]
		if a == nil {
			a = &testActor{}
		}
		f.actors[p] = a
		s.Actor(name, a)
	}
	root := f.tree.Root()
	state := root.Supervisor("state", Options{Timeout: 500 * time.Millisecond})
	actor(state, "config")
	actor(state, "masters")
	dns := root.Supervisor("dns", Options{FailureThreshold: 1000, FailureDecay: 1, FailureBackoff: 200 * time.Millisecond, Timeout: 500 * time.Millisecond})
	actor(dns, "udp-127.0.0.1")
	actor(dns, "tcp-127.0.0.1")
	node := root.Supervisor("node", Options{FailureThreshold: 2, FailureDecay: 1000, FailureBackoff: 200 * time.Millisecond, Timeout: 100 * time.Millisecond})
	actor(node, "interface")
	actor(node, "watchdog")
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.errc = make(chan error, 1)
	go func() { f.errc <- f.tree.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.errc:
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return within 5s of cancel")
		}
	})
	waitFor(t, "every node running", 2*time.Second, func() bool { return allInState(f.tree.Snapshot(), StateRunning) })
}

func (f *fixture) restartedPaths() []string {
	f.restartsMu.Lock()
	defer f.restartsMu.Unlock()
	return append([]string(nil), f.restarted...)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func allInState(n Node, state string) bool {
	if n.State != state {
		return false
	}
	for _, c := range n.Children {
		if !allInState(c, state) {
			return false
		}
	}
	return true
}

func find(n Node, path string) (Node, bool) {
	if n.Path == path {
		return n, true
	}
	for _, c := range n.Children {
		if m, ok := find(c, path); ok {
			return m, true
		}
	}
	return Node{}, false
}

func mustFind(t *testing.T, tr *Tree, path string) Node {
	t.Helper()
	n, ok := find(tr.Snapshot(), path)
	if !ok {
		t.Fatalf("no node %s in snapshot", path)
	}
	return n
}

// and combines conditions: the wrapper reports "running" just before the
// actor's own Serve starts, so tests that count runs wait for both.
func and(conds ...func() bool) func() bool {
	return func() bool {
		for _, c := range conds {
			if !c() {
				return false
			}
		}
		return true
	}
}

func runsAre(a *testActor, n int32) func() bool {
	return func() bool { return a.runs.Load() == n }
}

func nodeIs(tr *Tree, path, state string, restarts int) func() bool {
	return func() bool {
		n, ok := find(tr.Snapshot(), path)
		return ok && n.State == state && n.Restarts == restarts
	}
}

func TestBuildSnapshotAndJSON(t *testing.T) {
	f := newFixture(t, nil)

	snap := f.tree.Snapshot()
	if !allInState(snap, StateStopped) {
		t.Fatalf("before Serve every node must be stopped: %+v", snap)
	}
	var paths []string
	var walk func(Node)
	walk = func(n Node) {
		paths = append(paths, n.Kind+" "+n.Path)
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(snap)
	want := []string{
		"supervisor /spartan",
		"supervisor /spartan/state", "actor /spartan/state/config", "actor /spartan/state/masters",
		"supervisor /spartan/dns", "actor /spartan/dns/udp-127.0.0.1", "actor /spartan/dns/tcp-127.0.0.1",
		"supervisor /spartan/node", "actor /spartan/node/interface", "actor /spartan/node/watchdog",
	}
	if strings.Join(paths, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree shape:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}

	// Injected clock: uptime is measured from the start of the current run.
	clk := fakeclock.New()
	f.tree.clock = clk
	f.start(t)
	clk.Advance(5 * time.Second)

	raw, err := json.Marshal(f.tree.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "path", "kind", "state", "restarts", "uptime_seconds", "children"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("root JSON lacks %q: %s", k, raw)
		}
	}
	if generic["name"] != "spartan" || generic["path"] != "/spartan" || generic["kind"] != "supervisor" ||
		generic["state"] != "running" || generic["restarts"] != 0.0 || generic["uptime_seconds"] != 5.0 {
		t.Errorf("root JSON: %s", raw)
	}
	dns := generic["children"].([]any)[1].(map[string]any)
	udp := dns["children"].([]any)[0].(map[string]any)
	if udp["path"] != "/spartan/dns/udp-127.0.0.1" || udp["kind"] != "actor" || udp["state"] != "running" || udp["uptime_seconds"] != 5.0 {
		t.Errorf("actor JSON: %v", udp)
	}
	if _, has := udp["children"]; has {
		t.Errorf("an actor's JSON must omit children: %v", udp)
	}
}

func TestBuildMisuse(t *testing.T) {
	tr := New("spartan", Options{}, zerolog.Nop())
	root := tr.Root()
	root.Actor("a", &testActor{})
	for name, fn := range map[string]func(){
		"duplicate sibling": func() { root.Actor("a", &testActor{}) },
		"slash in name":     func() { root.Supervisor("x/y", Options{}) },
		"empty name":        func() { root.Actor("", &testActor{}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("expected a panic")
				}
			}()
			fn()
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- tr.Serve(ctx) }()
	waitFor(t, "root running", 2*time.Second, nodeIs(tr, "/spartan", StateRunning, 0))
	if err := tr.Serve(ctx); !errors.Is(err, ErrAlreadyServed) {
		t.Errorf("second Serve: %v, want ErrAlreadyServed", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("adding a node after Serve must panic")
			}
		}()
		root.Actor("late", &testActor{})
	}()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestKillActor(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	const victim = "/spartan/dns/udp-127.0.0.1"

	if err := f.tree.Kill(victim); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "victim running again with restarts=1", 2*time.Second, and(nodeIs(f.tree, victim, StateRunning, 1), runsAre(f.actors[victim], 2)))
	if got := f.actors[victim].runs.Load(); got != 2 {
		t.Errorf("victim runs = %d, want 2 (same actor value served again)", got)
	}
	for p, a := range f.actors {
		if p == victim {
			continue
		}
		if got := a.runs.Load(); got != 1 {
			t.Errorf("%s runs = %d, want 1: a sibling's run was interrupted", p, got)
		}
		if n := mustFind(t, f.tree, p); n.Restarts != 0 || n.State != StateRunning {
			t.Errorf("%s = %+v, want running with 0 restarts", p, n)
		}
	}
	for _, p := range []string{"/spartan", "/spartan/dns"} {
		if n := mustFind(t, f.tree, p); n.Restarts != 0 {
			t.Errorf("%s restarts = %d, want 0", p, n.Restarts)
		}
	}
	if got := f.restartedPaths(); len(got) != 1 || got[0] != victim {
		t.Errorf("OnRestart calls = %v, want [%s]", got, victim)
	}
	if lg := f.log.String(); !strings.Contains(lg, victim) || !strings.Contains(lg, "killed") || !strings.Contains(lg, `"restarts":1`) {
		t.Errorf("log lacks the failure/restart of %s:\n%s", victim, lg)
	}
}

func TestKillSupervisor(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)

	if err := f.tree.Kill("/spartan/node"); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "/spartan/node running with restarts=1", 2*time.Second, nodeIs(f.tree, "/spartan/node", StateRunning, 1))
	waitFor(t, "node children running again", 2*time.Second, func() bool {
		n := mustFind(t, f.tree, "/spartan/node")
		return allInState(n, StateRunning) && f.actors["/spartan/node/interface"].runs.Load() == 2 &&
			f.actors["/spartan/node/watchdog"].runs.Load() == 2
	})
	for p, a := range f.actors {
		want := int32(1)
		if strings.HasPrefix(p, "/spartan/node/") {
			want = 2
		}
		if got := a.runs.Load(); got != want {
			t.Errorf("%s runs = %d, want %d", p, got, want)
		}
	}
	for _, p := range []string{"/spartan", "/spartan/state", "/spartan/dns"} {
		if n := mustFind(t, f.tree, p); n.Restarts != 0 || n.State != StateRunning {
			t.Errorf("%s = %+v, want untouched", p, n)
		}
	}
}

func TestKillRoot(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)

	if err := f.tree.Kill("/spartan/"); err != nil { // trailing slash tolerated
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "root running with restarts=1", 2*time.Second, nodeIs(f.tree, "/spartan", StateRunning, 1))
	waitFor(t, "every actor served again", 2*time.Second, func() bool {
		for _, a := range f.actors {
			if a.runs.Load() != 2 {
				return false
			}
		}
		return allInState(f.tree.Snapshot(), StateRunning)
	})
	select {
	case err := <-f.errc:
		t.Fatalf("Serve returned after killing the root: %v", err)
	default:
	}
	// The restarted tree is fully functional.
	if err := f.tree.Kill("/spartan/state/config"); err != nil {
		t.Fatalf("Kill after root restart: %v", err)
	}
	waitFor(t, "config restarted", 2*time.Second, nodeIs(f.tree, "/spartan/state/config", StateRunning, 1))
}

func TestBackoffAndRecovery(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	const victim = "/spartan/node/watchdog" // /spartan/node: threshold 2, backoff 200ms

	for i := 1; i <= 2; i++ {
		if err := f.tree.Kill(victim); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		waitFor(t, fmt.Sprintf("restart %d", i), 2*time.Second, nodeIs(f.tree, victim, StateRunning, i))
	}
	killedAt := time.Now()
	if err := f.tree.Kill(victim); err != nil {
		t.Fatalf("kill 3: %v", err)
	}
	// Third failure exceeds the budget: the supervisor backs off.
	waitFor(t, "victim in backoff", 150*time.Millisecond, nodeIs(f.tree, victim, StateBackoff, 2))
	if err := f.tree.Kill(victim); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Kill during backoff: %v, want ErrNotRunning", err)
	}
	// Siblings keep running; other groups are untouched.
	for _, p := range []string{"/spartan/node/interface", "/spartan/dns/udp-127.0.0.1", "/spartan/dns/tcp-127.0.0.1", "/spartan/state/config"} {
		if n := mustFind(t, f.tree, p); n.State != StateRunning || f.actors[p].runs.Load() != 1 {
			t.Errorf("%s = %+v runs=%d during backoff, want running and never interrupted", p, n, f.actors[p].runs.Load())
		}
	}
	waitFor(t, "victim recovered", 2*time.Second, and(nodeIs(f.tree, victim, StateRunning, 3), runsAre(f.actors[victim], 4)))
	// Backoff is 200ms with up to 50% jitter.
	if d := time.Since(killedAt); d < 190*time.Millisecond {
		t.Errorf("recovered after %v, before the 200ms backoff", d)
	}
	if got := f.actors[victim].runs.Load(); got != 4 {
		t.Errorf("victim runs = %d, want 4", got)
	}
	if n := mustFind(t, f.tree, "/spartan/node"); n.Restarts != 0 || n.State != StateRunning {
		t.Errorf("/spartan/node = %+v, want running with 0 restarts", n)
	}
	if got := len(f.restartedPaths()); got != 3 {
		t.Errorf("OnRestart called %d times, want 3", got)
	}
	lg := f.log.String()
	for _, s := range []string{"backing off", "resumed after backoff", "restart deferred"} {
		if !strings.Contains(lg, s) {
			t.Errorf("log lacks %q", s)
		}
	}
}

func TestActorFailureModes(t *testing.T) {
	const victim = "/spartan/state/masters"
	cases := []struct {
		name    string
		first   func(ctx context.Context) error
		logWant string
	}{
		{"returns error", func(context.Context) error { return errors.New("boom-error") }, "boom-error"},
		{"returns nil", func(context.Context) error { return nil }, "returned while its context was live"},
		{"panics", func(context.Context) error { panic("boom-panic") }, "boom-panic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			failed := &testActor{behave: func(ctx context.Context, run int32) error {
				if run == 1 {
					return tc.first(ctx)
				}
				<-ctx.Done()
				return ctx.Err()
			}}
			f := newFixture(t, map[string]*testActor{victim: failed})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- f.tree.Serve(ctx) }()
			waitFor(t, "victim restarted once and running", 2*time.Second, and(nodeIs(f.tree, victim, StateRunning, 1), runsAre(failed, 2)))
			if got := failed.runs.Load(); got != 2 {
				t.Errorf("runs = %d, want 2", got)
			}
			if got := f.actors["/spartan/state/config"].runs.Load(); got != 1 {
				t.Errorf("sibling runs = %d, want 1", got)
			}
			if lg := f.log.String(); !strings.Contains(lg, tc.logWant) {
				t.Errorf("log lacks %q:\n%s", tc.logWant, lg)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

func TestActorIgnoringContext(t *testing.T) {
	const victim = "/spartan/node/interface" // /spartan/node has Timeout 100ms
	release := make(chan struct{})
	stuck := &testActor{behave: func(ctx context.Context, run int32) error {
		if run == 1 {
			<-release // ignores ctx
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	f := newFixture(t, map[string]*testActor{victim: stuck})
	f.start(t)

	t0 := time.Now()
	if err := f.tree.Kill(victim); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("Kill blocked for %v", d)
	}
	// The wrapper gives up after the timeout and the failure is counted; the
	// next run waits for the stuck call rather than running Serve twice.
	waitFor(t, "failure counted after the stop timeout", 2*time.Second, nodeIs(f.tree, victim, StateRestarting, 1))
	if d := time.Since(t0); d < 90*time.Millisecond {
		t.Errorf("wrapper gave up after %v, before the 100ms timeout", d)
	}
	time.Sleep(50 * time.Millisecond)
	if got := stuck.runs.Load(); got != 1 {
		t.Fatalf("runs = %d while the first call is stuck, want 1", got)
	}
	if lg := f.log.String(); !strings.Contains(lg, "ignored its cancelled context") {
		t.Errorf("log lacks the stop timeout:\n%s", lg)
	}
	if n := mustFind(t, f.tree, "/spartan/node/watchdog"); n.State != StateRunning || f.actors["/spartan/node/watchdog"].runs.Load() != 1 {
		t.Errorf("sibling disturbed: %+v", n)
	}

	close(release)
	waitFor(t, "actor served again once the stuck call returned", 2*time.Second, and(nodeIs(f.tree, victim, StateRunning, 1), runsAre(stuck, 2)))
	if got := stuck.runs.Load(); got != 2 {
		t.Errorf("runs = %d, want 2", got)
	}
	if got := stuck.maxSeen.Load(); got != 1 {
		t.Errorf("actor Serve ran %d times concurrently, want 1", got)
	}
}

func TestKillErrors(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.tree.Kill("/spartan/dns/udp-127.0.0.1"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Kill before Serve: %v, want ErrNotRunning", err)
	}
	f.start(t)
	for _, p := range []string{"/nope", "/spartan/dns/udp-10.0.0.1", "", "spartan", "/spartan/dns/udp-127.0.0.1/x"} {
		err := f.tree.Kill(p)
		if !errors.Is(err, ErrNoSuchPath) {
			t.Errorf("Kill(%q) = %v, want ErrNoSuchPath", p, err)
		}
	}
	if !allInState(f.tree.Snapshot(), StateRunning) {
		t.Error("a failed Kill disturbed the tree")
	}
}

func TestCleanShutdownNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()

	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.tree.Serve(ctx) }()
	waitFor(t, "all running", 2*time.Second, func() bool { return allInState(f.tree.Snapshot(), StateRunning) })
	if err := f.tree.Kill("/spartan/dns/tcp-127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := f.tree.Kill("/spartan/state"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all running after kills", 2*time.Second, func() bool { return allInState(f.tree.Snapshot(), StateRunning) })

	t0 := time.Now()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	t.Logf("clean stop took %v", time.Since(t0))

	var check func(n Node)
	check = func(n Node) {
		if n.State != StateStopped || n.Uptime != 0 {
			t.Errorf("%s after stop: state %s uptime %v, want stopped and 0", n.Path, n.State, n.Uptime)
		}
		for _, c := range n.Children {
			check(c)
		}
	}
	check(f.tree.Snapshot())
	for p, a := range f.actors {
		if a.active.Load() != 0 {
			t.Errorf("%s still serving after Serve returned", p)
		}
	}

	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after stop\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestKillSupervisorDuringBackoff(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	const victim = "/spartan/node/watchdog"
	for i := 1; i <= 3; i++ {
		if err := f.tree.Kill(victim); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		if i < 3 {
			waitFor(t, fmt.Sprintf("restart %d", i), 2*time.Second, nodeIs(f.tree, victim, StateRunning, i))
		}
	}
	waitFor(t, "victim in backoff", 150*time.Millisecond, nodeIs(f.tree, victim, StateBackoff, 2))
	// Killing the supervisor in backoff gives its group a fresh budget at
	// once; the deferred restart happens then and is counted.
	t0 := time.Now()
	if err := f.tree.Kill("/spartan/node"); err != nil {
		t.Fatalf("Kill supervisor: %v", err)
	}
	waitFor(t, "group running again", 2*time.Second, func() bool {
		n := mustFind(t, f.tree, "/spartan/node")
		return n.Restarts == 1 && allInState(n, StateRunning)
	})
	if d := time.Since(t0); d > 150*time.Millisecond {
		t.Errorf("group came back after %v: the fresh supervisor should not inherit the backoff", d)
	}
	if n := mustFind(t, f.tree, victim); n.Restarts != 3 {
		t.Errorf("victim restarts = %d, want 3", n.Restarts)
	}
	if got := len(f.restartedPaths()); got != 4 {
		t.Errorf("OnRestart calls = %v, want 3 for the victim and 1 for its supervisor", f.restartedPaths())
	}
}
