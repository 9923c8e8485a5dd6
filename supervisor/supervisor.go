package supervisor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/thejerf/suture/v4"
)

// Node kinds and states as they appear in Snapshot and in `spartanctl tree --json`.
const (
	KindSupervisor = "supervisor"
	KindActor      = "actor"

	StateRunning    = "running"
	StateRestarting = "restarting"
	StateBackoff    = "backoff"
	StateStopped    = "stopped"
)

var (
	// ErrNoSuchPath is wrapped by Kill for a path that names no node.
	ErrNoSuchPath = errors.New("no such path")
	// ErrNotRunning is wrapped by Kill for a node that has no current run
	// (not started yet, waiting to be restarted, or stopped).
	ErrNotRunning = errors.New("node is not running")
	// ErrKilled is what a killed node's wrapper returns to its supervisor, so
	// that the kill counts as a failure and the node is restarted.
	ErrKilled = errors.New("killed")
	// ErrStopTimeout is returned by an actor's wrapper when the actor did not
	// return within Options.Timeout after its context was cancelled.
	ErrStopTimeout = errors.New("actor did not stop within timeout")
	// ErrExited is returned by an actor's wrapper when the actor returned nil
	// although nobody asked it to stop; suture restarts it like any failure.
	ErrExited = errors.New("actor returned while its context was live")
	// ErrAlreadyServed is returned by a second call to Tree.Serve.
	ErrAlreadyServed = errors.New("tree already served")
)

const defaultTimeout = 10 * time.Second

// sutureTimeoutSlack is added to Options.Timeout for suture's own stop
// timeout: our wrappers give up on a stuck actor after Options.Timeout, so
// suture only reports a stop timeout when a wrapper itself is stuck.
const sutureTimeoutSlack = time.Second

// Options configures one supervisor node: the failure budget its suture
// supervisor shares among its children, and how long each child gets to stop.
type Options struct {
	FailureThreshold float64       // suture Spec.FailureThreshold (0 → suture default 5)
	FailureDecay     float64       // seconds (0 → suture default 30)
	FailureBackoff   time.Duration // (0 → suture default 15s)
	Timeout          time.Duration // how long a child gets to stop (0 → 10s)
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return defaultTimeout
	}
	return o.Timeout
}

// Node is one node of a Snapshot.
type Node struct {
	Name     string  `json:"name"`
	Path     string  `json:"path"`
	Kind     string  `json:"kind"`  // "supervisor" | "actor"
	State    string  `json:"state"` // "running" | "restarting" | "backoff" | "stopped"
	Restarts int     `json:"restarts"`
	Uptime   float64 `json:"uptime_seconds"` // since the current run started; 0 when not running
	Children []Node  `json:"children,omitempty"`
}

// Tree is a supervision tree. Build it with Root().Supervisor/Actor, then
// call Serve once.
type Tree struct {
	log   zerolog.Logger
	clock clock.Clock // uptimes; tests replace it

	// mu guards every node's bookkeeping and the fields below. Nothing on a
	// DNS hot path takes it: only wrappers starting/ending, suture events,
	// Snapshot and Kill.
	mu        sync.Mutex
	byPath    map[string]*node
	supByName map[string]*node // suture supervisor name → supervisor node (incl. the hidden top)
	top       *node
	root      *node
	served    bool
	onRestart func(path string)
}

// Sup is a supervisor node of a Tree, used to add children before Serve.
type Sup struct {
	n *node
}

type phase uint8

const (
	phaseStopped phase = iota
	phaseRunning
	phaseRestarting
)

// node is both the bookkeeping for one node and the suture.Service wrapper
// that runs it. Its String() is its path, which is how suture events are
// mapped back to nodes.
type node struct {
	tree     *Tree
	name     string
	path     string
	kind     string
	parent   *node
	children []*node
	opts     Options        // supervisor nodes: their own suture spec
	svc      suture.Service // actor nodes: the actor

	// Guarded by tree.mu.
	phase    phase
	cur      *run // the current wrapper run; nil when no Serve of this node is active
	restarts int
	pending  bool // failed while its supervisor was in backoff: queued for restart on resume
	backoff  bool // supervisor nodes: their suture supervisor is in backoff
	// innerDone (actors) is closed when the last started actor Serve call
	// returns; a run abandoned after Timeout leaves it open.
	innerDone chan struct{}
}

// run is one execution of a node's wrapper Serve.
type run struct {
	cancel  context.CancelFunc
	killed  bool      // guarded by tree.mu
	started time.Time // guarded by tree.mu; zero until the node is actually serving
}

// New creates a tree whose root supervisor node is "/"+rootName.
func New(rootName string, opts Options, log zerolog.Logger) *Tree {
	checkName(rootName)
	t := &Tree{
		log:       log,
		clock:     clock.Real{},
		byPath:    make(map[string]*node),
		supByName: make(map[string]*node),
	}
	t.top = &node{tree: t, name: "", path: "/" + rootName + "#top", kind: KindSupervisor, opts: opts}
	t.supByName[t.top.path] = t.top
	t.root = &node{tree: t, name: rootName, path: "/" + rootName, kind: KindSupervisor, opts: opts, parent: t.top}
	t.top.children = []*node{t.root}
	t.byPath[t.root.path] = t.root
	t.supByName[t.root.path] = t.root
	return t
}

// Root returns the root supervisor node.
func (t *Tree) Root() *Sup { return &Sup{n: t.root} }

// OnRestart sets a hook called with a node's path every time that node is
// restarted after a failure (for metrics). Set it before Serve. It is called
// from suture's goroutines and must not block.
func (t *Tree) OnRestart(fn func(path string)) {
	t.mu.Lock()
	t.onRestart = fn
	t.mu.Unlock()
}

func checkName(name string) {
	if name == "" || strings.ContainsAny(name, "/#") {
		panic(fmt.Sprintf("supervisor: invalid node name %q", name))
	}
}

func (s *Sup) add(child *node) {
	t := s.n.tree
	checkName(child.name)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.served {
		panic(fmt.Sprintf("supervisor: adding %s after Serve: the tree's shape is fixed before Serve", child.path))
	}
	if _, dup := t.byPath[child.path]; dup {
		panic(fmt.Sprintf("supervisor: duplicate node %s", child.path))
	}
	s.n.children = append(s.n.children, child)
	t.byPath[child.path] = child
	if child.kind == KindSupervisor {
		t.supByName[child.path] = child
	}
}

// Supervisor adds a child supervisor node with its own failure budget.
func (s *Sup) Supervisor(name string, opts Options) *Sup {
	c := &node{tree: s.n.tree, name: name, path: s.n.path + "/" + name, kind: KindSupervisor, opts: opts, parent: s.n}
	s.add(c)
	return &Sup{n: c}
}

// Actor adds a child actor node. svc's Serve is called again on the same
// value after every failure or kill.
func (s *Sup) Actor(name string, svc suture.Service) {
	if svc == nil {
		panic("supervisor: nil actor " + name)
	}
	c := &node{tree: s.n.tree, name: name, path: s.n.path + "/" + name, kind: KindActor, svc: svc, parent: s.n}
	s.add(c)
}

// Path returns the node's path, e.g. "/spartan/dns".
func (s *Sup) Path() string { return s.n.path }

func (n *node) String() string { return n.path }

func (n *node) spec() suture.Spec {
	return suture.Spec{
		EventHook:        n.tree.hook,
		FailureThreshold: n.opts.FailureThreshold,
		FailureDecay:     n.opts.FailureDecay,
		FailureBackoff:   n.opts.FailureBackoff,
		Timeout:          n.opts.timeout() + sutureTimeoutSlack,
	}
}

// Serve runs the tree until ctx is done. It returns nil after a clean stop.
func (t *Tree) Serve(ctx context.Context) error {
	t.mu.Lock()
	if t.served {
		t.mu.Unlock()
		return fmt.Errorf("supervisor %s: %w", t.root.path, ErrAlreadyServed)
	}
	t.served = true
	t.mu.Unlock()

	top := suture.New(t.top.path, t.top.spec())
	top.Add(t.root)
	t.log.Info().Str("path", t.root.path).Msg("supervision tree starting")
	err := top.Serve(ctx)

	t.mu.Lock()
	t.settle(t.top, true, true)
	t.mu.Unlock()

	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		t.log.Info().Str("path", t.root.path).Msg("supervision tree stopped")
		return nil
	}
	if err == nil {
		err = errors.New("top supervisor returned")
	}
	return fmt.Errorf("supervisor %s: %w", t.root.path, err)
}

// settle marks n's children that have no active run as stopped; with deep it
// does so for the whole subtree. Called with t.mu held once a suture
// supervisor has returned, so that children queued for a restart do not stay
// "restarting" (while n restarts, Snapshot shows them as n's state). A
// child's pending restart survives n's restart, unless the tree is stopping.
func (t *Tree) settle(n *node, deep, stopping bool) {
	n.backoff = false
	for _, c := range n.children {
		if c.cur == nil {
			c.phase = phaseStopped
			if stopping {
				c.pending = false
			}
		}
		if deep {
			t.settle(c, true, stopping)
		}
	}
}

// Serve implements suture.Service for the wrapper.
func (n *node) Serve(ctx context.Context) error {
	if n.kind == KindSupervisor {
		return n.serveSupervisor(ctx)
	}
	return n.serveActor(ctx)
}

func (n *node) serveSupervisor(ctx context.Context) error {
	t := n.tree
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{cancel: cancel}

	// A fresh suture supervisor per run: a killed supervisor node comes back
	// with a fresh failure budget, and its children are the same wrappers.
	sup := suture.New(n.path, n.spec())
	for _, c := range n.children {
		sup.Add(c)
	}

	// Children whose restart was deferred by the previous run's backoff are
	// started now by the fresh supervisor: that is their restart.
	var restarted []string
	t.mu.Lock()
	n.cur = r
	n.phase = phaseRunning
	r.started = t.clock.Now()
	n.backoff = false
	for _, c := range n.children {
		if c.pending {
			c.pending = false
			c.restarts++
			restarted = append(restarted, c.path)
			t.log.Info().Str("path", c.path).Int("restarts", c.restarts).Msg("restarting with its restarted supervisor")
		}
	}
	fn := t.onRestart
	t.mu.Unlock()
	if fn != nil {
		for _, p := range restarted {
			fn(p)
		}
	}

	err := sup.Serve(runCtx)

	t.mu.Lock()
	killed := r.killed
	if n.cur == r {
		n.cur = nil
		if ctx.Err() != nil {
			n.phase = phaseStopped
		} else {
			n.phase = phaseRestarting
		}
	}
	t.settle(n, false, ctx.Err() != nil)
	t.mu.Unlock()

	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case killed:
		return fmt.Errorf("%s: %w", n.path, ErrKilled)
	case err == nil:
		return fmt.Errorf("%s: suture supervisor returned", n.path)
	default:
		return fmt.Errorf("%s: %w", n.path, err)
	}
}

type outcome struct {
	err      error
	panicked bool
	panicVal any
	stack    []byte
}

// actorPanic is re-panicked in the wrapper's goroutine so that suture sees
// the actor's panic (the actor itself runs on another goroutine so that the
// wrapper can give up on it after Timeout).
type actorPanic struct {
	path  string
	value any
}

func (p actorPanic) String() string { return fmt.Sprintf("%s: panic: %v", p.path, p.value) }

func (n *node) serveActor(ctx context.Context) error {
	t := n.tree
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{cancel: cancel}

	t.mu.Lock()
	n.cur = r
	n.phase = phaseRestarting
	prev := n.innerDone
	t.mu.Unlock()

	if prev != nil {
		select {
		case <-prev:
		default:
			t.log.Warn().Str("path", n.path).Msg("previous run of the actor is still stuck; waiting for it before serving again")
			select {
			case <-prev:
			case <-runCtx.Done():
				return n.endActor(ctx, r, outcome{err: runCtx.Err()})
			}
		}
	}

	done := make(chan struct{})
	result := make(chan outcome, 1)
	t.mu.Lock()
	n.innerDone = done
	n.phase = phaseRunning
	r.started = t.clock.Now()
	t.mu.Unlock()

	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				result <- outcome{panicked: true, panicVal: p, stack: debug.Stack()}
			}
		}()
		err := n.svc.Serve(runCtx)
		result <- outcome{err: err}
	}()

	var out outcome
	select {
	case out = <-result:
	case <-runCtx.Done():
		timer := time.NewTimer(n.parent.opts.timeout())
		select {
		case out = <-result:
			timer.Stop()
		case <-timer.C:
			t.log.Error().Str("path", n.path).Dur("timeout", n.parent.opts.timeout()).
				Msg("actor ignored its cancelled context; abandoning its goroutine")
			out = outcome{err: fmt.Errorf("%s: %w", n.path, ErrStopTimeout)}
		}
	}
	return n.endActor(ctx, r, out)
}

// endActor records the end of run r and picks what the wrapper returns to
// suture. ctx is the context suture gave the wrapper: when it is done the
// parent is stopping us, which is not a failure.
func (n *node) endActor(ctx context.Context, r *run, out outcome) error {
	t := n.tree
	stopping := ctx.Err() != nil
	final := stopping || (!out.panicked && (errors.Is(out.err, suture.ErrDoNotRestart) || errors.Is(out.err, suture.ErrTerminateSupervisorTree)))

	t.mu.Lock()
	killed := r.killed
	if n.cur == r {
		n.cur = nil
		if final {
			n.phase = phaseStopped
		} else {
			n.phase = phaseRestarting
		}
	}
	t.mu.Unlock()

	if out.panicked {
		t.log.Error().Str("path", n.path).Str("panic", fmt.Sprint(out.panicVal)).
			Str("stack", string(out.stack)).Msg("actor panicked")
		if !stopping {
			panic(actorPanic{path: n.path, value: out.panicVal})
		}
	}
	switch {
	case stopping:
		return ctx.Err()
	case killed:
		if out.err != nil && !errors.Is(out.err, context.Canceled) {
			return fmt.Errorf("%s: %w (actor returned: %v)", n.path, ErrKilled, out.err)
		}
		return fmt.Errorf("%s: %w", n.path, ErrKilled)
	case out.err == nil:
		return fmt.Errorf("%s: %w", n.path, ErrExited)
	default:
		return out.err
	}
}

// Kill makes the node at path fail as if it had crashed: its current run's
// context is cancelled and its wrapper returns ErrKilled, so its supervisor
// restarts it (counting a failure against that supervisor's budget). Kill
// does not wait for the node to stop.
func (t *Tree) Kill(path string) error {
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	t.mu.Lock()
	n, ok := t.byPath[path]
	if !ok {
		t.mu.Unlock()
		return fmt.Errorf("supervisor: kill %q: %w", path, ErrNoSuchPath)
	}
	r := n.cur
	if r == nil {
		t.mu.Unlock()
		return fmt.Errorf("supervisor: kill %s: %w", path, ErrNotRunning)
	}
	r.killed = true
	restarts := n.restarts
	t.mu.Unlock()

	t.log.Warn().Str("path", path).Int("restarts", restarts).Msg("killing node")
	r.cancel()
	return nil
}

// hook receives every event of every suture supervisor of the tree.
func (t *Tree) hook(e suture.Event) {
	var restarted []string
	t.mu.Lock()
	switch ev := e.(type) {
	case suture.EventServiceTerminate:
		restarted = t.failed(ev.ServiceName, ev.Restarting, ev.CurrentFailures, ev.FailureThreshold, fmt.Sprint(ev.Err), false)
	case suture.EventServicePanic:
		restarted = t.failed(ev.ServiceName, ev.Restarting, ev.CurrentFailures, ev.FailureThreshold, ev.PanicMsg, true)
	case suture.EventBackoff:
		if s := t.supByName[ev.SupervisorName]; s != nil {
			s.backoff = true
		}
		t.log.Warn().Str("path", ev.SupervisorName).
			Msg("supervisor failure budget spent: backing off, no restarts until it resumes")
	case suture.EventResume:
		if s := t.supByName[ev.SupervisorName]; s != nil {
			s.backoff = false
			for _, c := range s.children {
				if c.pending {
					c.pending = false
					c.restarts++
					restarted = append(restarted, c.path)
					t.log.Info().Str("path", c.path).Int("restarts", c.restarts).Msg("restarting after backoff")
				}
			}
		}
		t.log.Info().Str("path", ev.SupervisorName).Msg("supervisor resumed after backoff")
	case suture.EventStopTimeout:
		t.log.Error().Str("path", ev.ServiceName).Str("supervisor", ev.SupervisorName).
			Msg("suture gave up waiting for a node to stop")
	default:
		t.log.Warn().Str("event", e.String()).Msg("unknown suture event")
	}
	fn := t.onRestart
	t.mu.Unlock()

	if fn != nil {
		for _, p := range restarted {
			fn(p)
		}
	}
}

// failed records one failure reported by suture. Called with t.mu held.
// It returns the paths restarted right away.
func (t *Tree) failed(path string, restarting bool, failures, threshold float64, errMsg string, panicked bool) []string {
	n := t.byPath[path]
	if n == nil {
		t.log.Error().Str("path", path).Str("error", errMsg).Msg("failure of an unknown service")
		return nil
	}
	lg := t.log.Warn()
	if panicked {
		lg = t.log.Error()
	}
	lg = lg.Str("path", path).Str("error", errMsg).Bool("panic", panicked).
		Float64("failures", failures).Float64("failure_threshold", threshold)
	if restarting {
		n.restarts++
		lg.Int("restarts", n.restarts).Msg("node failed; restarting")
		return []string{path}
	}
	n.pending = true
	lg.Int("restarts", n.restarts).Msg("node failed; supervisor in backoff, restart deferred")
	return nil
}

// Snapshot returns the current state of every node.
func (t *Tree) Snapshot() Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshot(t.root, "", t.clock.Now())
}

func (t *Tree) snapshot(n *node, parentState string, now time.Time) Node {
	out := Node{Name: n.name, Path: n.path, Kind: n.kind, Restarts: n.restarts}
	switch n.phase {
	case phaseRunning:
		out.State = StateRunning
		if n.cur != nil && !n.cur.started.IsZero() {
			out.Uptime = now.Sub(n.cur.started).Seconds()
		}
	case phaseRestarting:
		out.State = StateRestarting
		if n.parent != nil && n.parent.backoff {
			out.State = StateBackoff
		}
	default:
		out.State = StateStopped
	}
	// A node whose supervisor is down for a restart is down for the same
	// reason, and comes back with it.
	if out.State != StateRunning && (parentState == StateRestarting || parentState == StateBackoff) {
		out.State = parentState
	}
	for _, c := range n.children {
		out.Children = append(out.Children, t.snapshot(c, out.State, now))
	}
	return out
}
