package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Every process the harness starts gets its own process group, so that one
// kill(-pgid) also reaches the children NSD and dnsmasq fork, and is recorded
// in a registry that killAll empties on every exit path (normal return,
// error, SIGINT/SIGTERM).
var (
	regMu    sync.Mutex
	registry = map[int]*proc{}
	atExit   []func() // run by cleanup after the kills (scratch dir removal)
)

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done
}

// startProc starts argv with stdout and stderr appended to logPath.
func startProc(name, logPath string, argv ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	// Pdeathsig covers the case the registry cannot: this program dying
	// from SIGKILL or a panic in a goroutine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	regMu.Lock()
	registry[cmd.Process.Pid] = p
	regMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// childEnv drops NOTIFY_SOCKET so that a daemon speaking sd_notify does not
// talk to whatever service manager runs this harness.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalGroup sends sig to the whole process group.
func (p *proc) signalGroup(sig syscall.Signal) error {
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.name, err)
	}
	return nil
}

// stop asks politely (SIGTERM), then kills the group. A stopped (SIGSTOP)
// group is continued first so that it can act on SIGTERM.
func (p *proc) stop() {
	_ = syscall.Kill(-p.pid(), syscall.SIGCONT)
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
	}
	// Forked children (NSD's server processes) may outlive the leader.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	regMu.Lock()
	delete(registry, p.pid())
	regMu.Unlock()
}

// onExit registers fn to run in cleanup, on normal exit and on a signal
// alike (os.Exit from the signal handler skips deferred calls).
func onExit(fn func()) {
	regMu.Lock()
	defer regMu.Unlock()
	atExit = append(atExit, fn)
}

// cleanup is the last line of defence: SIGKILL every group still
// registered, then run the onExit functions. Safe to call twice.
func cleanup() {
	regMu.Lock()
	defer regMu.Unlock()
	for pid := range registry {
		_ = syscall.Kill(-pid, syscall.SIGCONT)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		delete(registry, pid)
	}
	for _, fn := range atExit {
		fn()
	}
	atExit = nil
}

// groupCPU returns utime+stime in seconds summed over every live process of
// the process group pgid (NSD answers from forked children, not the leader).
func groupCPU(pgid int) (float64, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks uint64
	found := false
	for _, path := range stats {
		f, err := readStat(path)
		if err != nil || f.pgrp != pgid {
			continue // processes come and go while we scan
		}
		found = true
		ticks += f.utime + f.stime
	}
	if !found {
		return 0, fmt.Errorf("no process in group %d", pgid)
	}
	return float64(ticks) / clockTicks, nil
}

// cpuTimes is the first line of /proc/stat, in seconds summed over all
// CPUs: busy (user, nice, system, irq, softirq), idle (idle, iowait), and
// stolen by the hypervisor.
type cpuTimes struct{ busy, idle, steal float64 }

func machineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]float64 // user nice system idle iowait irq softirq steal
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = float64(n) / clockTicks
	}
	return cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], idle: v[3] + v[4], steal: v[7]}, nil
}

// clockTicks is USER_HZ, 100 on every Linux ABI Go supports.
const clockTicks = 100

type statFields struct {
	state        byte // 'Z': zombie, dead but not yet reaped
	pgrp         int
	utime, stime uint64
}

// readStat parses /proc/PID/stat. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from the last ')'.
func readStat(path string) (statFields, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return statFields{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (statFields, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return statFields{}, fmt.Errorf("malformed stat line")
	}
	// After ')': field 3 (state) is rest[0]; pgrp is field 5, utime 14, stime 15.
	rest := strings.Fields(s[i+1:])
	if len(rest) < 13 {
		return statFields{}, fmt.Errorf("short stat line")
	}
	pgrp, err1 := strconv.Atoi(rest[2])
	ut, err2 := strconv.ParseUint(rest[11], 10, 64)
	st, err3 := strconv.ParseUint(rest[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return statFields{}, fmt.Errorf("bad stat numbers")
	}
	return statFields{state: rest[0][0], pgrp: pgrp, utime: ut, stime: st}, nil
}

// rssKiB reads VmRSS of one process.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}
