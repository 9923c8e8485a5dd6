package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spartan-dns/spartan/cmd/internal/manual"
)

func TestSplitGlobals(t *testing.T) {
	tests := []struct {
		args         []string
		socket, conf string
		rest         []string
		err          string
	}{
		{[]string{"tree"}, "", "", []string{"tree"}, ""},
		{[]string{"-socket", "/s", "tree"}, "/s", "", []string{"tree"}, ""},
		{[]string{"tree", "-socket", "/s", "--json"}, "/s", "", []string{"tree", "--json"}, ""},
		{[]string{"tree", "--socket=/s"}, "/s", "", []string{"tree"}, ""},
		{[]string{"check", "-config", "c.json", "-timeout", "1s"}, "", "c.json", []string{"check", "-timeout", "1s"}, ""},
		{[]string{"-config=c.json", "genresolv", "/etc/resolv.conf", "--config", "d.json"}, "", "d.json", []string{"genresolv", "/etc/resolv.conf"}, ""},
		{[]string{"kill", "--", "-socket"}, "", "", []string{"kill", "--", "-socket"}, ""},
		{[]string{"tree", "-socket"}, "", "", nil, "-socket needs a path"},
		{[]string{"tree", "-config="}, "", "", nil, "-config needs a path"},
	}
	for _, tc := range tests {
		g, rest, err := splitGlobals(tc.args)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case g.socket != tc.socket || g.config != tc.conf || !slices.Equal(rest, tc.rest):
			t.Errorf("%q: socket %q config %q rest %q; want %q %q %q", tc.args, g.socket, g.config, rest, tc.socket, tc.conf, tc.rest)
		}
	}
}

// TestGlobalsAnywhereAgainstADaemon runs the commands as the README writes
// them: the socket from the daemon's own config (-config), or -socket, in
// front of the command or after it.
func TestGlobalsAnywhereAgainstADaemon(t *testing.T) {
	socket, _, _ := startCtl(t)
	cfg := filepath.Join(t.TempDir(), "spartan.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"ctl_socket": %q, "interface": {"manage": false}}`, socket)), 0o644); err != nil {
		t.Fatal(err)
	}
	noSocket := filepath.Join(t.TempDir(), "nosocket.json")
	if err := os.WriteFile(noSocket, []byte(`{"ctl_socket": ""}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-config", cfg, "tree"}, 0, "/spartan"},
		{[]string{"tree", "-config", cfg}, 0, "/spartan"},
		{[]string{"tree", "-socket", socket, "--json"}, 0, `"path": "/spartan"`},
		{[]string{"upstreams", "-config", cfg}, 0, "127.0.0.1:5301"},
		{[]string{"-socket", socket, "upstreams"}, 0, "127.0.0.1:5301"},
		{[]string{"tree", "-config", noSocket}, 2, ""},
		{[]string{"tree", "-socket", socket + ".none"}, 1, ""},
	} {
		out := captureStdout(t, func() {
			if code := run(tc.args); code != tc.code {
				t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
			}
		})
		if !strings.Contains(out, tc.out) {
			t.Errorf("%q: stdout %q lacks %q", tc.args, out, tc.out)
		}
	}
}

// captureStdout runs fn with os.Stdout sent to a pipe (the commands print
// there) and returns what it printed.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		done <- b.String()
	}()
	defer func() { os.Stdout = old }()
	fn()
	w.Close()
	return <-done
}

// TestManPageDocumentsEverything: spartanctl(8) has a subsection for every
// command and a term for every flag each accepts, and nothing more; the
// global options are documented; help prints the page.
func TestManPageDocumentsEverything(t *testing.T) {
	var names []string
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	documented := manual.Commands(page)
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("spartanctl.8.md documents commands %v; spartanctl has %v", documented, names)
	}
	for _, name := range names {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		if f := commands[name].flags; f != nil {
			f(fs)
		}
		var want []string
		fs.VisitAll(func(f *flag.Flag) { want = append(want, "-"+f.Name) })
		got := manual.Terms(page, name)
		for i, g := range got { // "--json" documents -json too: the flag package takes both
			got[i] = "-" + strings.TrimLeft(g, "-")
		}
		got = slices.Compact(slices.Sorted(slices.Values(got)))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the page documents %v; the command accepts %v", name, got, want)
		}
	}
	wantGlobal := []string{"-h"}
	for _, g := range globalFlags {
		wantGlobal = append(wantGlobal, "-"+g)
	}
	slices.Sort(wantGlobal)
	if got := slices.Sorted(slices.Values(manual.Terms(page, "GLOBAL OPTIONS"))); !slices.Equal(got, wantGlobal) {
		t.Errorf("GLOBAL OPTIONS documents %v, want %v", got, wantGlobal)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		var out bytes.Buffer
		if code := runWith(args, &out, &bytes.Buffer{}); code != 0 || out.String() != manual.Text(page) {
			t.Errorf("spartanctl %q: exit %d, and it does not print the man page text", args, code)
		}
	}
}
