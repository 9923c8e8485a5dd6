package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/watchdog"
	wt "github.com/spartan-dns/spartan/actors/watchdog/watchdogtest"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestCheckTarget(t *testing.T) {
	withCfg := func(mut func(*config.Config)) func(string) (*config.Config, error) {
		return func(string) (*config.Config, error) {
			c := config.Default()
			mut(c)
			return c, nil
		}
	}
	defaults := withCfg(func(*config.Config) {})
	cases := []struct {
		name     string
		addr     string
		load     func(string) (*config.Config, error)
		udp, tcp netip.AddrPort
		wantErr  string
	}{
		{"default config", "", defaults, ap("198.51.100.1:53"), ap("198.51.100.1:53"), ""},
		{"bare IP gets 53", "127.0.0.9", defaults, ap("127.0.0.9:53"), ap("127.0.0.9:53"), ""},
		{"IP:PORT", "127.0.0.9:5353", defaults, ap("127.0.0.9:5353"), ap("127.0.0.9:5353"), ""},
		{"IPv6", "::1", defaults, ap("[::1]:53"), ap("[::1]:53"), ""},
		{"[IPv6]:PORT", "[::1]:5353", defaults, ap("[::1]:5353"), ap("[::1]:5353"), ""},
		{"bad addr", "localhost", defaults, netip.AddrPort{}, netip.AddrPort{}, "-addr"},
		{"port 0", "127.0.0.1:0", defaults, netip.AddrPort{}, netip.AddrPort{}, "port 0"},
		{"config ports", "", withCfg(func(c *config.Config) {
			c.BindIPs = []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.1.1.2")}
			c.UDPPort, c.TCPPort = 5353, 5354
		}), ap("10.1.1.1:5353"), ap("10.1.1.1:5354"), ""},
		{"udp disabled", "", withCfg(func(c *config.Config) { c.UDPServerEnabled = false }),
			netip.AddrPort{}, ap("198.51.100.1:53"), ""},
		{"tcp disabled", "", withCfg(func(c *config.Config) { c.TCPServerEnabled = false }),
			ap("198.51.100.1:53"), netip.AddrPort{}, ""},
		{"both disabled", "", withCfg(func(c *config.Config) { c.UDPServerEnabled, c.TCPServerEnabled = false, false }),
			netip.AddrPort{}, netip.AddrPort{}, "disables both"},
		{"no bind IPs", "", withCfg(func(c *config.Config) { c.BindIPs = nil }),
			netip.AddrPort{}, netip.AddrPort{}, "no bind IP"},
		{"load error", "", func(string) (*config.Config, error) { return nil, errors.New("config key \"udp_port\": bad") },
			netip.AddrPort{}, netip.AddrPort{}, "udp_port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			udp, tcp, err := checkTarget(c.addr, "", c.load)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if udp != c.udp || tcp != c.tcp {
				t.Fatalf("target udp=%v tcp=%v, want udp=%v tcp=%v", udp, tcp, c.udp, c.tcp)
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	good := wt.Start(t, wt.Loopback, wt.Good, wt.Good)
	noTCP := wt.Start(t, wt.Loopback, wt.Good, wt.Absent)
	silentUDP := wt.Start(t, wt.Loopback, wt.Silent, wt.Good)

	// A real config file, read through the real loader, whose first bind
	// IP is the good server.
	cfgFile := filepath.Join(t.TempDir(), "spartan.json")
	cfgJSON := fmt.Sprintf(`{"bind_ips": ["%s", "127.0.0.2"], "udp_port": %d, "tcp_port": %d}`, good.Addr(), good.Port(), good.Port())
	if err := os.WriteFile(cfgFile, []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badCfg, []byte(`{"udp_port": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name         string
		args         []string
		code         int
		stdout       string
		stderr       []string
		stderrAbsent string
	}{
		{"ok", []string{"-addr", good.String()}, 0, "ok: ready.spartan", nil, ""},
		{"ok from config", []string{"-config", cfgFile}, 0, good.String(), nil, ""},
		{"tcp down", []string{"-addr", noTCP.String(), "-timeout", "500ms"}, 1, "", []string{"FAIL tcp", "refused"}, "FAIL udp"},
		{"udp silent", []string{"-addr", silentUDP.String(), "-timeout", "300ms"}, 1, "", []string{"FAIL udp", "timeout"}, "FAIL tcp"},
		{"help", []string{"-h"}, 0, "", []string{"Exit status: 0 both transports", "1 the", "probe failed", "2 usage"}, ""},
		{"unknown flag", []string{"-bogus"}, 2, "", []string{"flag provided but not defined"}, ""},
		{"extra arg", []string{"x"}, 2, "", []string{"unexpected argument"}, ""},
		{"bad timeout", []string{"-timeout", "0s"}, 2, "", []string{"-timeout"}, ""},
		{"bad addr", []string{"-addr", "nohost"}, 2, "", []string{"-addr"}, ""},
		{"bad config", []string{"-config", badCfg}, 2, "", []string{"udp_port"}, ""},
		{"missing config", []string{"-config", filepath.Join(t.TempDir(), "none.json")}, 2, "", []string{"no such file"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := checkMain(c.args, checkDeps{load: loadConfig, probe: watchdog.ProbeAddrs, stdout: &stdout, stderr: &stderr})
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), c.stdout)
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), s)
				}
			}
			if c.stderrAbsent != "" && strings.Contains(stderr.String(), c.stderrAbsent) {
				t.Errorf("stderr %q contains %q", stderr.String(), c.stderrAbsent)
			}
		})
	}
}

// TestCheckRegistered makes sure the dispatcher knows the commands.
func TestCheckRegistered(t *testing.T) {
	for _, name := range []string{"check", "genresolv"} {
		if commands[name].run == nil {
			t.Errorf("command %q not registered", name)
		}
	}
	// Through the dispatcher: a probe of a closed port fails with 1.
	start := time.Now()
	if code := run([]string{"check", "-addr", "127.0.0.1:9", "-timeout", "300ms"}); code != 1 {
		t.Fatalf("run check against a closed port = %d, want 1", code)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("check ignored -timeout")
	}
}

// Without -addr, check also asks the daemon whether it has upstream
// resolvers: none fails naming what to set; a control socket that cannot
// be reached only skips that part.
func TestCheckUpstreams(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		n      int
		err    error
		code   int
		stderr string
	}{
		{"has upstreams", nil, 2, nil, 0, ""},
		{"none", nil, 0, nil, 1, "FAIL no upstream resolvers"},
		{"socket unreachable", nil, 0, errors.New("connection refused"), 0, "upstreams not checked"},
		{"-addr: not asked", []string{"-addr", "127.0.0.1"}, 0, nil, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.CtlSocket = "/nonexistent/ctl.sock"
			var stdout, stderr bytes.Buffer
			code := checkMain(c.args, checkDeps{
				load:      func(string) (*config.Config, error) { return cfg, nil },
				upstreams: func(string) (int, error) { return c.n, c.err },
				probe:     func(context.Context, netip.AddrPort, netip.AddrPort, time.Duration) error { return nil },
				stdout:    &stdout, stderr: &stderr,
			})
			if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), c.code, c.stderr)
			}
			if c.code == 1 && !strings.Contains(stderr.String(), config.DefaultUpstreamsPath) {
				t.Errorf("the failure does not name what to set: %q", stderr.String())
			}
		})
	}
}
