package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/ctl"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
)

type idleActor struct{}

func (idleActor) Serve(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// startCtl runs a small tree with a real control-socket actor and returns
// its socket, its tree and its upstream registry.
func startCtl(t *testing.T) (string, *supervisor.Tree, *state.Registry) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sctl") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "ctl.sock")

	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5301")}
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	opts := supervisor.Options{Timeout: time.Second, FailureBackoff: 100 * time.Millisecond}
	tree := supervisor.New("spartan", opts, zerolog.Nop())
	tree.Root().Supervisor("dns", opts).Actor("udp-127.0.0.1", idleActor{})
	api := tree.Root().Supervisor("api", opts)
	api.Actor("ctl", ctl.New(socket, api.Path()+"/ctl", tree, store, zerolog.Nop()))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("tree did not stop")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := ctl.Call(context.Background(), socket, ctl.Request{Cmd: ctl.CmdTree}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control socket did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return socket, tree, reg
}

func runCmd(main func(out, errOut *bytes.Buffer) int) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = main(&out, &errOut)
	return code, out.String(), errOut.String()
}

func TestTreeCommand(t *testing.T) {
	socket, _, _ := startCtl(t)

	code, out, errOut := runCmd(func(o, e *bytes.Buffer) int { return treeMain(o, e, socket, nil) })
	if code != 0 {
		t.Fatalf("tree: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^NAME\s+KIND\s+STATE\s+RESTARTS\s+UPTIME$`),
		regexp.MustCompile(`^/spartan\s+supervisor\s+running\s+0\s+[0-9.]+m?s$`),
		regexp.MustCompile(`^  dns\s+supervisor\s+running\s+0\s+`),
		regexp.MustCompile(`^    udp-127\.0\.0\.1\s+actor\s+running\s+0\s+`),
		regexp.MustCompile(`^  api\s+supervisor\s+running\s+0\s+`),
		regexp.MustCompile(`^    ctl\s+actor\s+running\s+0\s+`),
	}
	if len(lines) != len(want) {
		t.Fatalf("tree output:\n%s", out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %v", i, lines[i], re)
		}
	}

	for _, flag := range []string{"--json", "-json"} {
		code, out, errOut = runCmd(func(o, e *bytes.Buffer) int { return treeMain(o, e, socket, []string{flag}) })
		if code != 0 {
			t.Fatalf("tree %s: exit %d, stderr %q", flag, code, errOut)
		}
		// The spec's shape, with its exact keys.
		var root map[string]any
		if err := json.Unmarshal([]byte(out), &root); err != nil {
			t.Fatalf("tree %s: %v\n%s", flag, err, out)
		}
		for _, k := range []string{"name", "path", "kind", "state", "restarts", "children"} {
			if _, ok := root[k]; !ok {
				t.Errorf("tree %s: no %q in %v", flag, k, root)
			}
		}
		if root["path"] != "/spartan" || root["kind"] != "supervisor" || root["state"] != "running" {
			t.Errorf("tree %s root = %v", flag, root)
		}
	}

	code, _, errOut = runCmd(func(o, e *bytes.Buffer) int { return treeMain(o, e, socket, []string{"extra"}) })
	if code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("tree extra: exit %d, stderr %q", code, errOut)
	}
}

func TestKillCommand(t *testing.T) {
	socket, tree, _ := startCtl(t)
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderr  string
		restart string // a path whose restarts must reach 1
	}{
		{"actor", []string{"/spartan/dns/udp-127.0.0.1"}, 0, "killed /spartan/dns/udp-127.0.0.1", "", "/spartan/dns/udp-127.0.0.1"},
		{"unknown path", []string{"/spartan/nope"}, 1, "", "spartanctl kill: no node at /spartan/nope", ""},
		{"no path", nil, 2, "", "want exactly one PATH", ""},
		{"two paths", []string{"/a", "/b"}, 2, "", "want exactly one PATH", ""},
		{"itself", []string{"/spartan/api/ctl"}, 0, "killed /spartan/api/ctl", "", "/spartan/api/ctl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(func(o, e *bytes.Buffer) int { return killMain(o, e, socket, tc.args) })
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("kill %v: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
			if tc.restart == "" {
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for !restarted(tree.Snapshot(), tc.restart) {
				if time.Now().After(deadline) {
					t.Fatalf("%s not restarted: %+v", tc.restart, tree.Snapshot())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func restarted(n supervisor.Node, path string) bool {
	if n.Path == path {
		return n.State == supervisor.StateRunning && n.Restarts == 1
	}
	for _, c := range n.Children {
		if restarted(c, path) {
			return true
		}
	}
	return false
}

func TestUpstreamsCommand(t *testing.T) {
	socket, _, reg := startCtl(t)
	u := reg.Get(netip.MustParseAddrPort("127.0.0.1:5301"))
	u.Successes.Add(7)
	u.Failures.Add(2)
	u.Latency.Observe(2 * time.Millisecond)

	code, out, errOut := runCmd(func(o, e *bytes.Buffer) int { return upstreamsMain(o, e, socket, nil) })
	if code != 0 {
		t.Fatalf("upstreams: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("upstreams output:\n%s", out)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "ADDRESS ROUTES OK FAILURES STALLS MEAN P50 P99 SCORE RANK" {
		t.Errorf("header = %q", lines[0])
	}
	f := strings.Fields(lines[1])
	if len(f) != 10 || f[0] != "127.0.0.1:5301" || f[1] != "default" || f[2] != "7" || f[3] != "2" || f[4] != "0" || f[5] != "2.00ms" {
		t.Errorf("row = %q", lines[1])
	}
}

// Without a daemon, every control command fails with a message that says
// so, whether the socket is missing or stale (nobody listening).
func TestNoDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "sctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	mains := map[string]func(o, e *bytes.Buffer, socket string) int{
		"tree":      func(o, e *bytes.Buffer, s string) int { return treeMain(o, e, s, nil) },
		"kill":      func(o, e *bytes.Buffer, s string) int { return killMain(o, e, s, []string{"/spartan"}) },
		"upstreams": func(o, e *bytes.Buffer, s string) int { return upstreamsMain(o, e, s, nil) },
		"reload":    func(o, e *bytes.Buffer, s string) int { return reloadMain(o, e, s, nil) },
	}
	for name, m := range mains {
		for sockName, sock := range map[string]string{"missing": missing, "stale": stale} {
			code, out, errOut := runCmd(func(o, e *bytes.Buffer) int { return m(o, e, sock) })
			want := "spartanctl: cannot connect to " + sock + ": is spartan running?"
			if code != 1 || out != "" || !strings.HasPrefix(errOut, want) {
				t.Errorf("%s with %s socket: exit %d, stdout %q, stderr %q; want exit 1 and %q", name, sockName, code, out, errOut, want)
			}
		}
	}
}

func TestCtlCommandsRegistered(t *testing.T) {
	for _, c := range []string{"tree", "kill", "upstreams", "reload"} {
		if commands[c].run == nil {
			t.Errorf("command %q not registered", c)
		}
	}
}
