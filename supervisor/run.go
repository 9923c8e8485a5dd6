// How a node runs: Serve, the wrappers that suture runs for supervisor and
// actor nodes, and how the end of a run is accounted.

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/thejerf/suture/v4"
)

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
	t.mu.Lock()
	n.cur = r
	n.phase = phaseRunning
	r.started = t.clock.Now()
	n.backoff = false
	t.unlockAnnouncing(t.restartPending(n, "restarting with its restarted supervisor"))

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
		return fmt.Errorf("%s: %w", n.path, ErrReturned)
	default:
		return out.err
	}
}
