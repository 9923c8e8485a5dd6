package ctl

import (
	"context"
	"path/filepath"
	"testing"
)

// A reload's new process takes the socket path over at once (WithTakeOver),
// and the process it replaces, when it stops, leaves the path alone: it is
// no longer its socket. Had it removed the path, spartanctl would find no
// socket for the new process's whole life.
func TestTakeOverAndLeave(t *testing.T) {
	p := filepath.Join(shortDir(t), "ctl.sock")
	old := start(t, p)
	oldTree, _ := call(t, p, Request{Cmd: CmdTree})
	if oldTree == nil || !oldTree.OK {
		t.Fatalf("old process's tree: %+v", oldTree)
	}
	// The new process: its own tree, named apart, served on the same path.
	nu := start(t, p, func(a *Actor) { a.WithTakeOver() })
	old.stop()
	for range 3 {
		r, err := Call(context.Background(), p, Request{Cmd: CmdTree})
		if err != nil || !r.OK {
			t.Fatalf("after the old process stopped: %+v, %v (its release removed the new socket?)", r, err)
		}
	}
	nu.stop()
}
