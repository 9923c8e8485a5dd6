package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// needTool fails under CI (the tools are part of the CI image) and skips
// on a developer machine without them.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
}

func TestProcessGroupIsMeasuredAndKilled(t *testing.T) {
	needTool(t, "sh")
	log := filepath.Join(t.TempDir(), "log")
	// A parent that burns CPU in a forked child, as NSD answers from its
	// children: the group's CPU must include the child's, and stop must
	// reach the child too.
	p, err := startProc("burner", log, "sh", "-c", "(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 30) & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var cpu float64
	for time.Now().Before(deadline) {
		if cpu, _ = groupCPU(p.pid()); cpu >= 0.05 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cpu < 0.05 {
		t.Fatalf("group CPU %.2fs, want the child's burn counted", cpu)
	}
	if kib, err := rssKiB(p.pid()); err != nil || kib <= 0 {
		t.Errorf("rss = %d, %v", kib, err)
	}
	pgid := p.pid()
	p.stop()
	// Nothing of the group may survive. The orphaned child is reaped by
	// init whenever init gets to it, so zombies do not count.
	time.Sleep(100 * time.Millisecond)
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		if f, err := readStat(path); err == nil && f.pgrp == pgid && f.state != 'Z' {
			t.Fatalf("%s: process of group %d still alive after stop (state %c)", path, pgid, f.state)
		}
	}
	regMu.Lock()
	defer regMu.Unlock()
	if len(registry) != 0 {
		t.Fatalf("registry not emptied: %v", registry)
	}
}
