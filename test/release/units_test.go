package release

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var relDir = filepath.Join("..", "..", "rel")

var unitNames = []string{
	"spartan.service",
	"spartan.socket",
	"spartan-watchdog.service",
	"spartan-watchdog.timer",
	"spartan-gen-resolvconf.service",
	"spartan-gen-resolvconf.timer",
}

// unit is a parsed unit file: section -> key -> values in order (keys may
// repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not expected in our units", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// get returns the last value of key (systemd's rule for single-valued keys).
func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// words returns the union of the space-separated values of a list key.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// seconds parses the systemd time spans our units use ("5", "60s", "1min",
// "5min", "1h").
func seconds(t *testing.T, v string) float64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)\s*(s|sec|min|m|h)?$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("time span %q not understood", v)
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "min", "m":
		return float64(n) * 60
	case "h":
		return float64(n) * 3600
	}
	return float64(n)
}

func loadUnits(t *testing.T) map[string]unit {
	t.Helper()
	us := map[string]unit{}
	for _, name := range unitNames {
		us[name] = parseUnit(t, filepath.Join(relDir, name))
	}
	return us
}

func TestUnitKeys(t *testing.T) {
	us := loadUnits(t)
	type want struct {
		unit, section, key, value string
	}
	exact := []want{
		{"spartan.service", "Service", "Type", "notify"},
		{"spartan.service", "Service", "ExecStart", "/usr/bin/spartan -config /etc/spartan/spartan.json"},
		{"spartan.service", "Service", "WatchdogSec", "60s"},
		{"spartan.service", "Service", "Restart", "always"},
		{"spartan.service", "Service", "RestartSec", "1"},
		{"spartan.service", "Service", "NotifyAccess", "main"},
		{"spartan.service", "Service", "ExecReload", "/usr/bin/spartanctl -socket /run/spartan/spartanctl.sock reload"},
		{"spartan.service", "Unit", "Requires", "spartan.socket"},
		{"spartan.service", "Unit", "StartLimitIntervalSec", "0"},
		{"spartan.socket", "Socket", "FreeBind", "yes"},
		{"spartan.socket", "Socket", "ReceiveBuffer", "4M"},
		{"spartan.socket", "Socket", "Service", "spartan.service"},
		{"spartan.socket", "Install", "WantedBy", "sockets.target"},
		{"spartan.service", "Service", "NoNewPrivileges", "yes"},
		{"spartan.service", "Service", "RuntimeDirectory", "spartan"},
		{"spartan.service", "Install", "WantedBy", "multi-user.target"},
		{"spartan-watchdog.service", "Service", "Type", "oneshot"},
		{"spartan-watchdog.timer", "Timer", "OnActiveSec", "1min"},
		{"spartan-watchdog.timer", "Timer", "OnUnitActiveSec", "5min"},
		{"spartan-watchdog.timer", "Install", "WantedBy", "timers.target"},
		{"spartan-gen-resolvconf.service", "Service", "Type", "oneshot"},
		{"spartan-gen-resolvconf.service", "Service", "EnvironmentFile", "-/etc/spartan/genresolv.env"},
		{"spartan-gen-resolvconf.service", "Service", "ExecStart", "/usr/bin/spartanctl genresolv /etc/resolv.conf"},
		{"spartan-gen-resolvconf.timer", "Install", "WantedBy", "timers.target"},
	}
	for _, w := range exact {
		if got := us[w.unit].get(w.section, w.key); got != w.value {
			t.Errorf("%s [%s] %s = %q, want %q", w.unit, w.section, w.key, got, w.value)
		}
	}

	s := us["spartan.service"]
	caps := []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := s.words("Service", key); !slices.Equal(got, caps) {
			t.Errorf("spartan.service %s = %v, want exactly %v", key, got, caps)
		}
	}
	// Hardening must not take away what the daemon needs: the host's
	// network namespace and netlink for the interface actor.
	if v := s.get("Service", "PrivateNetwork"); v == "yes" || v == "true" {
		t.Error("spartan.service has PrivateNetwork: it would serve DNS in an empty namespace")
	}
	if fam := s.words("Service", "RestrictAddressFamilies"); len(fam) > 0 {
		for _, need := range []string{"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"} {
			if !slices.Contains(fam, need) {
				t.Errorf("spartan.service RestrictAddressFamilies %v lacks %s", fam, need)
			}
		}
	}
	if v := s.get("Service", "PrivateUsers"); v == "yes" || v == "true" {
		t.Error("spartan.service has PrivateUsers: its capabilities would not apply to the host's network")
	}

	// The socket unit holds a UDP and a TCP socket on port 53 of every
	// default bind IP, and only those.
	var def struct {
		BindIPs []string `json:"bind_ips"`
		Port    int      `json:"udp_port"`
	}
	data, err := os.ReadFile(filepath.Join(relDir, "spartan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &def); err != nil {
		t.Fatal(err)
	}
	var listen []string
	for _, ip := range def.BindIPs {
		listen = append(listen, ip+":"+strconv.Itoa(def.Port))
	}
	sock := us["spartan.socket"]
	for _, key := range []string{"ListenDatagram", "ListenStream"} {
		if got := sock.words("Socket", key); !slices.Equal(got, listen) {
			t.Errorf("spartan.socket %s = %v, want the bind IPs of rel/spartan.json: %v", key, got, listen)
		}
	}

	wd := us["spartan-watchdog.service"].get("Service", "ExecStart")
	if !strings.Contains(wd, "spartanctl check") || !strings.Contains(wd, "||") || !strings.Contains(wd, "systemctl restart spartan") {
		t.Errorf("spartan-watchdog.service ExecStart %q: want `spartanctl check || systemctl restart spartan.service`", wd)
	}
	gt := us["spartan-gen-resolvconf.timer"]
	if every := gt.get("Timer", "OnUnitActiveSec"); every == "" || seconds(t, every) > 120 {
		t.Errorf("spartan-gen-resolvconf.timer OnUnitActiveSec = %q, want about a minute", every)
	}
	if first := gt.get("Timer", "OnActiveSec") + gt.get("Timer", "OnBootSec"); first == "" {
		t.Error("spartan-gen-resolvconf.timer has no first run (OnActiveSec/OnBootSec)")
	}
}

// stubbedCopy copies the units to a temp dir with /usr/bin/spartan and
// /usr/bin/spartanctl pointed at executable stubs, so verify can check the
// rest without the binaries installed.
func stubbedCopy(t *testing.T) (dir string, paths []string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"spartan", "spartanctl"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range unitNames {
		data, err := os.ReadFile(filepath.Join(relDir, name))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/bin/spartan"), []byte(bin+"/spartan"))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return dir, paths
}

func needSystemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("systemd-analyze not found (Debian package systemd): %v", err)
	}
	t.Skipf("systemd-analyze not found: %v", err)
	return ""
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the units. It
// exits 0 even for unknown keys or unparsable values, printing a warning
// instead, so any output at all is a failure.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := needSystemdAnalyze(t)
	dir, paths := stubbedCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, append([]string{"verify"}, paths...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check has teeth: a unit with a typo does produce output.
	bad := filepath.Join(dir, "typo.service")
	if err := os.WriteFile(bad, []byte("[Service]\nType=notifyy\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.CommandContext(ctx, sa, "verify", bad).CombinedOutput()
	if len(bytes.TrimSpace(out)) == 0 {
		t.Fatal("systemd-analyze verify said nothing about Type=notifyy: this check cannot catch mistakes here")
	}
}

// TestSystemdAnalyzeSecurity keeps the daemon's sandbox from eroding: the
// exposure score was 2.2 when the unit was written.
func TestSystemdAnalyzeSecurity(t *testing.T) {
	sa := needSystemdAnalyze(t)
	_, paths := stubbedCopy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sa, "security", "--offline=yes", "--no-pager", paths[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("spartan.service exposure level %.1f", score)
	if score > 3.0 {
		t.Fatalf("spartan.service exposure %.1f > 3.0: hardening was lost\n%s", score, out)
	}
}

// TestWatchdogCommand runs the watchdog unit's ExecStart line under sh with
// stub spartanctl and systemctl: a failing check must restart spartan, a
// passing one must not.
func TestWatchdogCommand(t *testing.T) {
	line := loadUnits(t)["spartan-watchdog.service"].get("Service", "ExecStart")
	for _, tc := range []struct {
		checkExit   int
		wantRestart bool
	}{{0, false}, {1, true}, {2, true}} {
		dir := t.TempDir()
		log := filepath.Join(dir, "calls")
		stub := func(name, body string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho "+name+" \"$@\" >> "+log+"\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		stub("spartanctl", "exit "+strconv.Itoa(tc.checkExit)+"\n")
		stub("systemctl", "exit 0\n")
		cmdline := strings.ReplaceAll(line, "/usr/bin/spartanctl", filepath.Join(dir, "spartanctl"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("check exit %d: %q: %v\n%s", tc.checkExit, cmdline, err, out)
		}
		calls, _ := os.ReadFile(log)
		restarted := strings.Contains(string(calls), "systemctl restart spartan.service")
		if !strings.Contains(string(calls), "spartanctl check") || restarted != tc.wantRestart {
			t.Fatalf("check exit %d: calls %q, want restart %v", tc.checkExit, calls, tc.wantRestart)
		}
	}
}
