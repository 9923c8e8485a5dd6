package release

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The package is built once per test binary: building both binaries from
// scratch takes a while on a shared machine.
var (
	debOnce sync.Once
	debPath string
	debErr  error
	debOut  []byte
)

const testVersion = "0~test1"

func needTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (Debian package %s; make test-deps installs it): %v", name, debianPackage, err)
	}
	t.Skipf("%s not found (Debian package %s): %v", name, debianPackage, err)
	return ""
}

// buildDeb runs rel/deb/build.sh (what make deb runs) into a temp dir.
func buildDeb(t *testing.T) string {
	t.Helper()
	needTool(t, "dpkg-deb", "dpkg")
	debOnce.Do(func() {
		dir, err := os.MkdirTemp("", "spartan-deb-")
		if err != nil {
			debErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(relDir, "deb", "build.sh"), dir, testVersion)
		debOut, debErr = cmd.CombinedOutput()
		debPath = filepath.Join(dir, "spartan_"+testVersion+"_amd64.deb")
	})
	if debErr != nil {
		t.Fatalf("rel/deb/build.sh: %v\n%s", debErr, debOut)
	}
	return debPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if debPath != "" {
		os.RemoveAll(filepath.Dir(debPath))
	}
	os.Exit(code)
}

// unpack extracts the package into a throwaway root.
func unpack(t *testing.T, deb string) string {
	t.Helper()
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	return root
}

// TestDebContents: the files, their modes and owners, the conffile, the
// control fields, and that the binaries and man pages are the real ones.
func TestDebContents(t *testing.T) {
	deb := buildDeb(t)
	out, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, out)
	}
	modes := map[string]string{} // path -> "-rwxr-xr-x root/root"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[0][0] != '-' {
			continue
		}
		modes[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
	}
	want := map[string]string{
		"/usr/bin/spartan":                    "-rwxr-xr-x root/root",
		"/usr/bin/spartanctl":                 "-rwxr-xr-x root/root",
		"/etc/spartan/spartan.json":           "-rw-r--r-- root/root",
		"/usr/share/man/man8/spartan.8.gz":    "-rw-r--r-- root/root",
		"/usr/share/man/man8/spartanctl.8.gz": "-rw-r--r-- root/root",
		"/usr/share/doc/spartan/copyright":    "-rw-r--r-- root/root",
		"/usr/share/doc/spartan/changelog.gz": "-rw-r--r-- root/root",
		"/usr/share/doc/spartan/README.md":    "-rw-r--r-- root/root",
		"/usr/share/doc/spartan/OPERATOR.md":  "-rw-r--r-- root/root",
	}
	units, _ := filepath.Glob(filepath.Join(relDir, "*.service"))
	for _, pat := range []string{"*.socket", "*.timer"} {
		more, _ := filepath.Glob(filepath.Join(relDir, pat))
		units = append(units, more...)
	}
	if len(units) < 5 {
		t.Fatalf("rel/ has %d units, want at least 5", len(units))
	}
	for _, u := range units {
		want["/lib/systemd/system/"+filepath.Base(u)] = "-rw-r--r-- root/root"
	}
	for p, m := range want {
		if got, ok := modes[p]; !ok {
			t.Errorf("package lacks %s", p)
		} else if got != m {
			t.Errorf("%s: %s, want %s", p, got, m)
		}
	}
	for p := range modes {
		if _, ok := want[p]; !ok {
			t.Errorf("package has unexpected file %s", p)
		}
	}

	ctrl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/spartan/spartan.json" {
		t.Errorf("conffiles = %q (%v), want /etc/spartan/spartan.json", conffiles, err)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(ctrl, s)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("maintainer script %s: %v %v, want mode 0755", s, fi, err)
		}
	}
	for field, value := range map[string]string{"Package": "spartan", "Version": testVersion, "Architecture": "amd64"} {
		out, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
		if err != nil || strings.TrimSpace(string(out)) != value {
			t.Errorf("control %s = %q (%v), want %q", field, out, err, value)
		}
	}

	root := unpack(t, deb)
	out, err = exec.Command(filepath.Join(root, "usr/bin/spartan"), "-version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "spartan "+testVersion {
		t.Errorf("packaged spartan -version: %q %v", out, err)
	}
	out, err = exec.Command(filepath.Join(root, "usr/bin/spartanctl"), "help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "GLOBAL OPTIONS") {
		t.Errorf("packaged spartanctl help: %v\n%s", err, out)
	}
	cfg, _ := os.ReadFile(filepath.Join(root, "etc/spartan/spartan.json"))
	if src, _ := os.ReadFile(filepath.Join(relDir, "spartan.json")); !bytes.Equal(cfg, src) {
		t.Error("/etc/spartan/spartan.json differs from rel/spartan.json")
	}
	man, err := exec.Command("sh", "-c", "zcat "+filepath.Join(root, "usr/share/man/man8/spartanctl.8.gz")).Output()
	if err != nil || !bytes.Contains(man, []byte(".TH spartanctl 8")) {
		t.Errorf("spartanctl.8.gz is not a man page: %v\n%.200s", err, man)
	}
}

// TestDebLintian: lintian reports no error, and only the warnings
// rel/README.md lists with their reasons.
func TestDebLintian(t *testing.T) {
	lintian := needTool(t, "lintian", "lintian")
	deb := buildDeb(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, lintian, "--tag-display-limit", "0", deb).CombinedOutput()
	readme, err := os.ReadFile(filepath.Join(relDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[0]) != 2 || f[0][1] != ':' {
			continue // "running with root privileges..." and the like
		}
		tag := f[2]
		switch f[0] {
		case "E:":
			t.Errorf("lintian error: %s", line)
		case "W:":
			if !bytes.Contains(readme, []byte("`"+tag+"`")) {
				t.Errorf("lintian warning not listed with its reason in rel/README.md: %s", line)
			}
		}
	}
	if t.Failed() {
		t.Logf("lintian output:\n%s", out)
	}
}

// TestDebUnitsVerify runs systemd-analyze verify on the units as packaged,
// their ExecStart pointing at the packaged binaries.
func TestDebUnitsVerify(t *testing.T) {
	sa := needSystemdAnalyze(t)
	root := unpack(t, buildDeb(t))
	dir := t.TempDir()
	units, _ := filepath.Glob(filepath.Join(root, "lib/systemd/system/*"))
	var paths []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/bin/spartan"), []byte(filepath.Join(root, "usr/bin/spartan")))
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, append([]string{"verify"}, paths...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDebMaintainerScripts runs the maintainer scripts as dpkg would, with
// deb-systemd-helper, deb-systemd-invoke and systemctl replaced by stubs
// that record their arguments: enable on install, stop on remove, purge
// the state on purge; the config stays on remove and goes on purge.
func TestDebMaintainerScripts(t *testing.T) {
	deb := buildDeb(t)
	ctrl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	stubs := t.TempDir()
	log := filepath.Join(stubs, "calls")
	for _, name := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		// Exit 0 for all: was-enabled is true on a first install.
		script := "#!/bin/sh\necho \"" + name + " $*\" >> " + log + "\nexit 0\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var enabled []string // units with an [Install] section
	all := []string{}
	for _, pat := range []string{"*.service", "*.socket", "*.timer"} {
		us, _ := filepath.Glob(filepath.Join(relDir, pat))
		for _, u := range us {
			all = append(all, filepath.Base(u))
			if data, _ := os.ReadFile(u); bytes.Contains(data, []byte("\n[Install]")) {
				enabled = append(enabled, filepath.Base(u))
			}
		}
	}
	if !slices.Contains(enabled, "spartan.service") {
		t.Fatalf("spartan.service has no [Install] section: %v", enabled)
	}
	_, err := os.Stat("/run/systemd/system")
	systemdRunning := err == nil
	// The config of a throwaway root (DPKG_ROOT), as dpkg leaves it: the
	// conffile on remove; on purge dpkg has deleted it before postrm runs.
	dpkgRoot := t.TempDir()
	etc := filepath.Join(dpkgRoot, "etc", "spartan")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"spartan.json", "genresolv.env"} {
		if err := os.WriteFile(filepath.Join(etc, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(script string, args ...string) []string {
		t.Helper()
		os.Remove(log)
		cmd := exec.Command(filepath.Join(ctrl, script), args...)
		cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))
		if script == "postrm" {
			cmd.Env = append(cmd.Env, "DPKG_ROOT="+dpkgRoot)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", script, args, err, out)
		}
		data, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	has := func(calls []string, what string) bool { return slices.Contains(calls, what) }

	calls := run("postinst", "configure")
	for _, u := range enabled {
		if !has(calls, "deb-systemd-helper enable "+u) {
			t.Errorf("postinst configure does not enable %s: %q", u, calls)
		}
	}
	if systemdRunning != has(calls, "deb-systemd-invoke start "+strings.Join(enabled, " ")) {
		t.Errorf("postinst configure (systemd running: %v): %q", systemdRunning, calls)
	}
	calls = run("prerm", "remove")
	if systemdRunning != has(calls, "deb-systemd-invoke stop "+strings.Join(all, " ")) {
		t.Errorf("prerm remove (systemd running: %v): %q", systemdRunning, calls)
	}
	calls = run("prerm", "upgrade", "0~old")
	if slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "stop") }) {
		t.Errorf("prerm upgrade stops units: %q", calls)
	}
	calls = run("postrm", "remove")
	if !has(calls, "deb-systemd-helper mask "+strings.Join(enabled, " ")) || slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, "purge") }) {
		t.Errorf("postrm remove: %q", calls)
	}
	for _, f := range []string{"spartan.json", "genresolv.env"} {
		if _, err := os.Stat(filepath.Join(etc, f)); err != nil {
			t.Errorf("postrm remove removed the configuration: %v", err)
		}
	}
	if err := os.Remove(filepath.Join(etc, "spartan.json")); err != nil { // dpkg's part of a purge
		t.Fatal(err)
	}
	calls = run("postrm", "purge")
	if !has(calls, "deb-systemd-helper purge "+strings.Join(enabled, " ")) {
		t.Errorf("postrm purge: %q", calls)
	}
	if _, err := os.Stat(etc); !os.IsNotExist(err) {
		t.Errorf("postrm purge left %s: %v", etc, err)
	}
}
