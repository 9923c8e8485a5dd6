package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"golang.org/x/sys/unix"
)

// Reload and upgrade without a gap (SIGHUP; docs/ARCHITECTURE.md, "Reload
// and upgrade"). The running process starts the binary on disk afresh with
// the same arguments and its listening sockets (the systemd LISTEN_FDS
// protocol), plus one end of a socket pair. The new process loads the
// config file and serves those sockets at once; when its own watchdog
// check passes (ready.spartan over UDP and TCP) it writes "READY" on the
// pair instead of telling systemd. Only then does the old process tell
// systemd MAINPID=<new> READY=1, answer "OK" (from then on the new process
// notifies systemd itself), stop reading and exit once it has answered what
// it holds. If the new process exits (an invalid config exits 2) or is not
// ready in time, it is killed and the old one goes on serving.

// upgrader runs reloads for one daemon.
type upgrader struct {
	exe     string   // the binary path, resolved at start: a package upgrade replaces that file
	args    []string // our own arguments, given to the new process
	timeout time.Duration
	log     zerolog.Logger
	files   func() ([]*os.File, error) // the sockets to hand over, named by listener
	notify  func(state string) error   // to systemd
	cache   *cache.Cache               // handed over too (cachehandover.go); nil: off
	tag     string                     // routingTag of our config

	busy     atomic.Bool
	Reloads  atomic.Uint64 // reloads that handed over
	Failures atomic.Uint64 // reloads whose new process failed; we kept serving
}

// errBusy is returned while another reload is running.
var errBusy = errors.New("a reload is already running")

// reload starts a new process and returns its PID once it serves; the
// caller then stops. On error the caller keeps serving.
func (u *upgrader) reload() (pid int, err error) {
	if !u.busy.CompareAndSwap(false, true) {
		return 0, errBusy
	}
	defer u.busy.Store(false)
	_ = u.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	pid, err = u.start()
	if err != nil {
		u.Failures.Add(1)
		_ = u.notify("READY=1") // back to running: the old process, unchanged
		return 0, err
	}
	u.Reloads.Add(1)
	return pid, nil
}

func (u *upgrader) start() (int, error) {
	files, err := u.files()
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socketpair", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "upgrade"), os.NewFile(uintptr(pair[1]), "upgrade-child")
	defer ours.Close()

	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name()
	}
	cmd := exec.Command(u.exe, u.args...)
	cmd.Env = append(environWithout("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", envUpgradeParent, envUpgradeFD, envUpgradeCacheFD),
		"LISTEN_FDS="+strconv.Itoa(len(files)),
		"LISTEN_FDNAMES="+strings.Join(names, ":"),
		envUpgradeParent+"="+strconv.Itoa(os.Getpid()),
		envUpgradeFD+"="+strconv.Itoa(3+len(files)))
	cmd.ExtraFiles = append(append([]*os.File{}, files...), theirs)
	var cacheR, cacheW *os.File
	if u.cache != nil {
		if cacheR, cacheW, err = os.Pipe(); err != nil {
			_ = theirs.Close()
			return 0, fmt.Errorf("cache hand-over pipe: %w", err)
		}
		cmd.Env = append(cmd.Env, envUpgradeCacheFD+"="+strconv.Itoa(3+len(cmd.ExtraFiles)))
		cmd.ExtraFiles = append(cmd.ExtraFiles, cacheR)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Start()
	_ = theirs.Close()
	if cacheR != nil {
		_ = cacheR.Close()
	}
	if err != nil {
		if cacheW != nil {
			_ = cacheW.Close()
		}
		return 0, fmt.Errorf("start %s: %w", u.exe, err)
	}
	if cacheW != nil {
		go sendCache(u.cache, u.tag, cacheW, u.log)
	}
	pid := cmd.Process.Pid
	started := time.Now()
	u.log.Info().Int("pid", pid).Str("binary", u.exe).Msg("reload: new process started; waiting until it serves")

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(ours).ReadString('\n')
		if err == nil && line != "READY\n" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	// A new process that does not become ready is stopped as cleanly as
	// it can be: SIGTERM makes it answer the queries it already read from
	// the shared sockets (and leave the rest queued, for us); SIGKILL only
	// if it does not exit.
	fail := func(err error) (int, error) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return 0, err
	}
	select {
	case err := <-exited:
		return 0, fmt.Errorf("new process %d exited before serving: %w", pid, exitErr(err))
	case <-time.After(u.timeout):
		return fail(fmt.Errorf("new process %d not serving after %s; stopped it", pid, u.timeout))
	case err := <-ready:
		if err != nil {
			select {
			case werr := <-exited:
				return 0, fmt.Errorf("new process %d exited before serving: %w", pid, exitErr(werr))
			case <-time.After(time.Second):
				return fail(fmt.Errorf("new process %d: readiness: %w", pid, err))
			}
		}
	}
	u.log.Info().Int("pid", pid).Dur("took", time.Since(started)).Msg("reload: new process serving")
	// Hand the service over: systemd now watches the new process.
	if err := u.notify(fmt.Sprintf("MAINPID=%d\nREADY=1", pid)); err != nil {
		u.log.Warn().Err(err).Msg("reload: cannot tell systemd the new MAINPID")
	}
	_ = ours.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = ours.Write([]byte("OK\n"))
	return pid, nil
}

func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

func environWithout(keys ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, x := range keys {
			drop = drop || k == x
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// handoffNotifier is the watchdog's notifier in a process started by a
// reload: its READY goes to the process it replaces (over the socket pair),
// which tells systemd; everything after that goes to systemd directly.
type handoffNotifier struct {
	mu     sync.Mutex
	parent *os.File // nil once handed off (or not started by a reload)
	sd     func(state string) error
	log    zerolog.Logger
}

// newHandoffNotifier takes the descriptor named by SPARTAN_UPGRADE_FD, if any.
func newHandoffNotifier(sd func(string) error, log zerolog.Logger) *handoffNotifier {
	n := &handoffNotifier{sd: sd, log: log}
	if v := os.Getenv(envUpgradeFD); v != "" {
		if fd, err := strconv.Atoi(v); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
			n.parent = os.NewFile(uintptr(fd), "upgrade")
		}
	}
	_ = os.Unsetenv(envUpgradeFD)
	return n
}

// pending reports whether this process still waits to take over from the
// one that started it.
func (n *handoffNotifier) pending() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.parent != nil
}

// Notify implements watchdog.Notifier.
func (n *handoffNotifier) Notify(state string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.parent == nil || !strings.Contains(state, "READY=1") {
		return n.sd(state)
	}
	p := n.parent
	n.parent = nil
	defer p.Close()
	_ = p.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.Write([]byte("READY\n")); err == nil {
		line, err := bufio.NewReader(p).ReadString('\n')
		if err == nil && line == "OK\n" {
			n.log.Info().Msg("reload: the previous process handed over; we are the service now")
			return nil
		}
	}
	// The old process is gone (or gave up on us): tell systemd ourselves.
	n.log.Warn().Msg("reload: the previous process did not confirm the hand-over")
	return n.sd(state)
}
