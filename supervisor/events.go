// Failures and restarts: Kill, and the accounting of suture's events.

package supervisor

import (
	"fmt"
	"strings"

	"github.com/thejerf/suture/v4"
)

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
			restarted = t.restartPending(s, "restarting after backoff")
		}
		t.log.Info().Str("path", ev.SupervisorName).Msg("supervisor resumed after backoff")
	case suture.EventStopTimeout:
		t.log.Error().Str("path", ev.ServiceName).Str("supervisor", ev.SupervisorName).
			Msg("suture gave up waiting for a node to stop")
	default:
		t.log.Warn().Str("event", e.String()).Msg("unknown suture event")
	}
	t.unlockAnnouncing(restarted)
}

// restartPending counts a restart for every child of sup whose restart was
// deferred (its supervisor was in backoff or about to be restarted): sup's
// suture supervisor is starting them now. Called with t.mu held; returns
// their paths.
func (t *Tree) restartPending(sup *node, why string) []string {
	var restarted []string
	for _, c := range sup.children {
		if c.pending {
			c.pending = false
			c.restarts++
			restarted = append(restarted, c.path)
			t.log.Info().Str("path", c.path).Int("restarts", c.restarts).Msg(why)
		}
	}
	return restarted
}

// unlockAnnouncing releases t.mu, then calls the OnRestart hook for each
// restarted path: outside the lock, so that the hook may call back into
// the tree.
func (t *Tree) unlockAnnouncing(restarted []string) {
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
