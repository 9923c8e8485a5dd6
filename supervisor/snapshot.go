package supervisor

import "time"

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
