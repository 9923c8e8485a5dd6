package ctl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestReload: the reload command answers when the reload is over, with
// the new PID, and only then hands over (stops this process); a failed
// reload is answered reload_failed with its reason and hands nothing over.
func TestReload(t *testing.T) {
	tests := []struct {
		name     string
		reloader bool
		pid      int
		err      error
		code     string // "" : success
		msg      string
	}{
		{name: "hand-over", reloader: true, pid: 4242},
		{name: "new process failed", reloader: true, err: errors.New("new process 99 exited before serving: exit status 2"),
			code: CodeReloadFailed, msg: "exit status 2"},
		{name: "no reloader", code: CodeInternal, msg: "cannot reload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			replied := make(chan struct{}) // closed once the client has the answer
			handed := make(chan struct{})
			r := Reloader(func() (int, func(), error) {
				return tc.pid, func() {
					// Blocks until the client has read the answer: an
					// actor that handed over first would never answer.
					select {
					case <-replied:
					case <-time.After(5 * time.Second):
					}
					close(handed)
				}, tc.err
			})
			var with []func(*Actor)
			if tc.reloader {
				with = append(with, func(a *Actor) { a.WithReload(r) })
			}
			f := start(t, shortDir(t)+"/ctl.sock", with...)
			resp, err := call(t, f.socket, Request{Cmd: CmdReload})
			close(replied)
			if tc.code == "" {
				if err != nil || resp.PID != tc.pid {
					t.Fatalf("reload: %v, %+v; want ok with pid %d", err, resp, tc.pid)
				}
				select {
				case <-handed:
				case <-time.After(5 * time.Second):
					t.Fatal("no hand-over after a successful reload")
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("reload: %v; want code %s naming %q", err, tc.code, tc.msg)
			}
			select {
			case <-handed:
				t.Fatal("handed over after a failed reload")
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}
