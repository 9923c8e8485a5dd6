package supervisor

import (
	"context"
	"errors"
	"fmt"
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
	// ErrReturned is returned by an actor's wrapper when the actor returned
	// nil although nobody asked it to stop; suture restarts it like any
	// failure.
	ErrReturned = errors.New("actor returned while its context was live")
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
