package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spartan-dns/spartan/cmd/internal/manual"
)

// TestRunWithoutStarting covers every way run returns before the daemon
// starts: help, version, stray arguments, bad flags and config.
func TestRunWithoutStarting(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"udp_port": 0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring; "" means empty
		stderr     string // substring; "" means empty
		stderrLine int    // lines expected on stderr (0: not checked)
	}{
		{"help", []string{"-h"}, 0, "OPTIONS", "", 0},
		{"long help", []string{"--help"}, 0, "/etc/spartan/spartan.json", "", 0},
		{"version", []string{"-version"}, 0, "spartan " + Version, "", 0},
		{"stray argument", []string{"rel/spartan.json"}, 2, "", `unexpected argument "rel/spartan.json"`, 2},
		{"argument after flags", []string{"-log-level", "debug", "start"}, 2, "", `unexpected argument "start"`, 2},
		{"unknown flag", []string{"-cofig", "x"}, 2, "", "usage: spartan", 0},
		{"bad level", []string{"-log-level", "loud"}, 2, "", "bad -log-level", 1},
		{"bad config printed once", []string{"-config", bad}, 2, "", `"key":"udp_port"`, 1},
		{"missing config", []string{"-config", bad + ".none"}, 2, "", "no such file", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &out, &errOut)
			}
			for _, c := range []struct {
				name, got, want string
			}{{"stdout", out.String(), tc.stdout}, {"stderr", errOut.String(), tc.stderr}} {
				if c.want == "" && c.got != "" {
					t.Errorf("%s not empty:\n%s", c.name, c.got)
				}
				if !strings.Contains(c.got, c.want) {
					t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.got)
				}
			}
			if n := strings.Count(errOut.String(), "\n"); tc.stderrLine != 0 && n != tc.stderrLine {
				t.Errorf("stderr has %d lines, want %d:\n%s", n, tc.stderrLine, &errOut)
			}
		})
	}
}

// TestManPageDocumentsEveryFlag: spartan(8) and the flags cannot drift; -h
// is documented too, and -h prints the page.
func TestManPageDocumentsEveryFlag(t *testing.T) {
	fs, _ := newFlags(nil)
	want := []string{"-h"}
	fs.VisitAll(func(f *flag.Flag) { want = append(want, "-"+f.Name) })
	got := manual.Terms(page, "")
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("spartan.8.md documents flags %v; the binary accepts %v", got, want)
	}
	var out bytes.Buffer
	run([]string{"-h"}, &out, &bytes.Buffer{})
	if out.String() != manual.Text(page) {
		t.Error("spartan -h does not print the man page text")
	}
}
