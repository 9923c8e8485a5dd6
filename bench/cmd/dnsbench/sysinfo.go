package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// machineInfo is what the reader needs to judge the figures: the same
// run on a loaded 2-core box and on an idle 32-core one are not comparable.
func machineInfo(loadStart string) [][2]string {
	return [][2]string{
		{"CPUs (nproc)", strings.TrimSpace(cmdOut("nproc"))},
		{"CPU model", cpuModel()},
		{"kernel", strings.TrimSpace(readOr("/proc/sys/kernel/osrelease"))},
		{"load average (1, 5, 15 min) at start", loadStart},
		{"load average at end", loadavg()},
	}
}

func cpuModel() string {
	for _, l := range strings.Split(readOr("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// versions asks every tool for its version the way its manual says.
func versions(o *options) [][2]string {
	return [][2]string{
		{"dnsperf", grepLine(cmdOut("dnsperf", "-h"), "Version")},
		{"nsd", firstLine(cmdOut("nsd", "-v"))},
		{"dnsdist", firstLine(cmdOut("dnsdist", "--version"))},
		{"dnsmasq", firstLine(cmdOut("dnsmasq", "--version"))},
		{"coredns", strings.Join(strings.Fields(cmdOut(absOr(o.corednsBin), "-version")), " ")},
		{"unbound", grepLine(cmdOut("unbound", "-V"), "Version")},
		{"nftables", firstLine(cmdOut("nft", "--version"))},
		{"go", firstLine(cmdOut("go", "version"))},
		{"dnsbench built with", runtime.Version()},
		{"spartan", spartanVersion(o)},
	}
}

func spartanVersion(o *options) string {
	if err := fileExec(absOr(o.spartanBin)); err != nil {
		return err.Error()
	}
	commit := strings.TrimSpace(cmdOut("git", "rev-parse", "HEAD"))
	if commit == "" || strings.Contains(commit, "fatal") || strings.Contains(commit, "HEAD") {
		commit = "no commit yet"
	}
	// The benchmark's own reports do not count: make bench rewrites
	// HOTPATH.md before this runs.
	if strings.TrimSpace(cmdOut("git", "status", "--porcelain", "--", ".", ":!bench/RESULTS.md", ":!bench/HOTPATH.md")) != "" {
		commit += " (working tree has uncommitted changes)"
	}
	return "git " + commit
}

// cmdOut runs a command and returns stdout+stderr (nsd -v prints on
// stderr); a missing tool yields "missing".
func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if len(out) == 0 && err != nil {
		return "missing (" + err.Error() + ")"
	}
	return string(out)
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func grepLine(s, word string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			return strings.TrimSpace(l)
		}
	}
	return firstLine(s)
}

// loadavg is the 1, 5 and 15 minute load: other work on the machine skews
// every figure, and this is the cheapest way to show it did.
func loadavg() string {
	f := strings.Fields(readOr("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
