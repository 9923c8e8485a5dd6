// Package sysd does for tests what systemd does for Spartan in production:
// it binds the socket unit's sockets and keeps them, starts the daemon with
// them (LISTEN_FDS/LISTEN_PID), listens on a NOTIFY_SOCKET with systemd's
// rules (NotifyAccess=main: only the main PID is heard; MAINPID= moves the
// service to another process), restarts the service when its main process
// exits (Restart=always), and is the child subreaper that adopts the
// process a reload started. Load (load.go) is an open-loop client that
// counts every query answered, late, or lost.
package sysd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is one process of the service that exited.
type Exit struct {
	PID    int
	Status unix.WaitStatus
	Main   bool // it was the main process when it exited (a restart follows)
}

// Manager runs one service.
type Manager struct {
	Bin     string
	Args    []string
	Log     *os.File // the daemon's stdout and stderr
	Restart bool     // Restart=always

	sockets []*os.File
	names   []string
	notify  *net.UnixConn
	nsPath  string

	mu       sync.Mutex
	cond     *sync.Cond
	main     int
	ready    bool // READY=1 from main since its start or last RELOADING=1
	starts   int
	exits    []Exit
	rejected int // notifications from a process that was not main
	watched  map[int]bool
	stopping bool
	closed   bool
}

// NewManager binds UDP and TCP sockets on addr (none for a zero addr) as spartan.socket does
// (FreeBind, a 4 MiB receive buffer, the default backlog) and a notify
// socket in dir.
func NewManager(t testing.TB, dir string, addr netip.AddrPort, bin string, args ...string) *Manager {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl PR_SET_CHILD_SUBREAPER: %v", err)
	}
	m := &Manager{Bin: bin, Args: args, Restart: true, watched: map[int]bool{}}
	m.cond = sync.NewCond(&m.mu)
	if addr.IsValid() { // else no sockets: the daemon binds its own (no socket unit)
		u, err := bindSocket(unix.SOCK_DGRAM, addr)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := bindSocket(unix.SOCK_STREAM, addr)
		if err != nil {
			t.Fatal(err)
		}
		m.sockets = []*os.File{u, tc}
		m.names = []string{"spartan-udp", "spartan-tcp"}
	}
	var err error
	m.nsPath = filepath.Join(dir, "notify.sock")
	m.notify, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: m.nsPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := m.notify.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if m.Log, err = os.Create(filepath.Join(dir, "spartan.log")); err != nil {
		t.Fatal(err)
	}
	go m.readNotify()
	t.Cleanup(m.close)
	return m
}

func bindSocket(typ int, addr netip.AddrPort) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	if typ == unix.SOCK_DGRAM {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		}
	} else {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 4096); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
	}
	return os.NewFile(uintptr(fd), addr.String()), nil
}

// Start starts the service and waits until it is READY.
func (m *Manager) Start(t testing.TB) int {
	t.Helper()
	if err := m.spawn(); err != nil {
		t.Fatal(err)
	}
	return m.WaitReady(t, 20*time.Second)
}

// spawn starts a main process. LISTEN_PID must be the daemon's own PID,
// which is only known after the fork: a shell sets it and execs the
// daemon, keeping its PID (systemd sets it between fork and exec).
func (m *Manager) spawn() error {
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, m.Bin}, m.Args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+m.nsPath)
	if len(m.sockets) > 0 {
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(m.sockets)), "LISTEN_FDNAMES="+strings.Join(m.names, ":"))
	}
	cmd.ExtraFiles = m.sockets
	cmd.Stdout, cmd.Stderr = m.Log, m.Log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.Bin, err)
	}
	pid := cmd.Process.Pid
	m.mu.Lock()
	m.main, m.ready = pid, false
	m.starts++
	m.mu.Unlock()
	m.watch(pid)
	return nil
}

// watch reaps pid once it exits. A process a reload started is the child
// of the old main process until that one exits; then it is ours (we are a
// subreaper), so an ECHILD means "not ours yet".
func (m *Manager) watch(pid int) {
	m.mu.Lock()
	if m.watched[pid] {
		m.mu.Unlock()
		return
	}
	m.watched[pid] = true
	m.mu.Unlock()
	go func() {
		var ws unix.WaitStatus
		for {
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if got == pid {
				break
			}
			if err != nil && !errors.Is(err, unix.ECHILD) && !errors.Is(err, unix.EINTR) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		m.exited(pid, ws)
	}()
}

func (m *Manager) exited(pid int, ws unix.WaitStatus) {
	m.drainNotify()
	m.mu.Lock()
	isMain := pid == m.main
	m.exits = append(m.exits, Exit{PID: pid, Status: ws, Main: isMain})
	restart := isMain && m.Restart && !m.stopping && !m.closed
	if isMain {
		m.main, m.ready = 0, false
	}
	m.cond.Broadcast()
	m.mu.Unlock()
	if restart {
		time.Sleep(100 * time.Millisecond) // RestartSec=100ms, systemd's default
		if err := m.spawn(); err != nil {
			fmt.Fprintf(m.Log, "sysd: restart failed: %v\n", err)
		}
	}
}

// readNotify handles sd_notify datagrams like systemd with NotifyAccess=main.
func (m *Manager) readNotify() {
	buf := make([]byte, 4096)
	oob := make([]byte, 1024)
	for {
		n, oobn, _, _, err := m.notify.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return
		}
		m.handleNotify(buf[:n], oob[:oobn])
	}
}

// drainNotify handles the notifications already queued (a process's last
// words before its exit is seen).
func (m *Manager) drainNotify() {
	buf := make([]byte, 4096)
	oob := make([]byte, 1024)
	rc, err := m.notify.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n, oobn int
		var rerr error
		_ = rc.Control(func(fd uintptr) {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT)
		})
		if rerr != nil {
			return
		}
		m.handleNotify(buf[:n], oob[:oobn])
	}
}

func (m *Manager) handleNotify(msg, oob []byte) {
	pid := 0
	if cmsgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, c := range cmsgs {
			if cred, err := unix.ParseUnixCredentials(&c); err == nil {
				pid = int(cred.Pid)
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if pid == 0 || pid != m.main {
		m.rejected++
		return
	}
	for _, line := range bytes.Split(msg, []byte("\n")) {
		k, v, _ := strings.Cut(string(line), "=")
		switch k {
		case "READY":
			m.ready = v == "1"
		case "RELOADING":
			m.ready = false
		case "MAINPID":
			if p, err := strconv.Atoi(v); err == nil && p > 0 {
				m.main = p
				m.mu.Unlock()
				m.watch(p)
				m.mu.Lock()
			}
		}
	}
	m.cond.Broadcast()
}

// WaitReady waits until the main process has said READY=1 and returns its PID.
func (m *Manager) WaitReady(t testing.TB, d time.Duration) int {
	t.Helper()
	pid, ok := m.waitFor(d, func() bool { return m.main != 0 && m.ready })
	if !ok {
		t.Fatalf("service not READY within %s; log:\n%s", d, m.LogTail(40))
	}
	return pid
}

// waitFor waits until cond (evaluated under the lock) holds; it returns the
// main PID then.
func (m *Manager) waitFor(d time.Duration, cond func() bool) (int, bool) {
	timer := time.AfterFunc(d, func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(d)
	m.mu.Lock()
	defer m.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			return m.main, false
		}
		m.cond.Wait()
	}
	return m.main, true
}

// Main returns the current main PID (0 between a main exit and its restart).
func (m *Manager) Main() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.main
}

// Signal sends sig to the main process and returns its PID.
func (m *Manager) Signal(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	pid := m.Main()
	if pid == 0 {
		t.Fatal("no main process to signal")
	}
	if err := unix.Kill(pid, sig); err != nil {
		t.Fatalf("kill %d %v: %v", pid, sig, err)
	}
	return pid
}

// Restart signals the main process (SIGTERM or SIGKILL), waits for its exit
// and for the restarted one to be READY; it returns the old exit.
func (m *Manager) Cycle(t testing.TB, sig syscall.Signal) Exit {
	t.Helper()
	old := m.Signal(t, sig)
	var ex Exit
	if _, ok := m.waitFor(20*time.Second, func() bool {
		for _, e := range m.exits {
			if e.PID == old {
				ex = e
				return true
			}
		}
		return false
	}); !ok {
		t.Fatalf("pid %d did not exit after %v; log:\n%s", old, sig, m.LogTail(40))
	}
	m.WaitReady(t, 20*time.Second)
	return ex
}

// Reload sends SIGHUP and waits until the service is READY again: it
// returns the main PID before and after (equal when the reload failed).
func (m *Manager) Reload(t testing.TB) (before, after int) {
	t.Helper()
	before = m.Signal(t, syscall.SIGHUP)
	// RELOADING=1 clears ready; READY=1 (from the old main after a failure,
	// or with MAINPID= after a hand-over) sets it.
	if _, ok := m.waitFor(20*time.Second, func() bool { return !m.ready || m.main != before }); !ok {
		t.Fatalf("no RELOADING=1 after SIGHUP; log:\n%s", m.LogTail(40))
	}
	after = m.WaitReady(t, 40*time.Second)
	return before, after
}

// WaitExit waits until pid has exited and returns its exit.
func (m *Manager) WaitExit(t testing.TB, pid int, d time.Duration) Exit {
	t.Helper()
	var ex Exit
	if _, ok := m.waitFor(d, func() bool {
		for _, e := range m.exits {
			if e.PID == pid {
				ex = e
				return true
			}
		}
		return false
	}); !ok {
		t.Fatalf("pid %d still running after %s; log:\n%s", pid, d, m.LogTail(40))
	}
	return ex
}

// Stats returns how many times the service was started (restarts + 1),
// the exits so far and the notifications rejected (not from main).
func (m *Manager) Stats() (starts int, exits []Exit, rejected int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.starts, append([]Exit(nil), m.exits...), m.rejected
}

// LogTail returns the last n lines the daemons logged.
func (m *Manager) LogTail(n int) string {
	data, _ := os.ReadFile(m.Log.Name())
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM to the main process, without a restart, and waits.
func (m *Manager) Stop(t testing.TB) Exit {
	t.Helper()
	m.mu.Lock()
	m.stopping = true
	pid := m.main
	m.mu.Unlock()
	if pid == 0 {
		return Exit{}
	}
	_ = unix.Kill(pid, syscall.SIGTERM)
	return m.WaitExit(t, pid, 20*time.Second)
}

func (m *Manager) close() {
	m.mu.Lock()
	m.closed, m.stopping = true, true
	pid := m.main
	m.mu.Unlock()
	if pid != 0 {
		_ = unix.Kill(pid, syscall.SIGKILL)
		_, _ = m.waitFor(5*time.Second, func() bool { return m.main != pid })
	}
	_ = m.notify.Close()
	for _, f := range m.sockets {
		_ = f.Close()
	}
	_ = m.Log.Close()
}
