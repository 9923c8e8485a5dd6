// Package zkharness runs a real, single-node ZooKeeper (the Debian package's
// jars) for tests: a fresh data directory, a free port on 127.0.0.1, the admin
// server off, and JVM flags tuned for a fast start.
//
// Start(t) is the usual entry point. Tests that want one server per test
// binary use Launch and Close from TestMain or a sync.Once helper, since a
// server tied to the first test's t would stop when that test ends.
package zkharness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Where the Debian zookeeper package puts things. The jar's manifest lists
// its dependencies with absolute paths, so it is the whole classpath.
const (
	debianJar = "/usr/share/java/zookeeper.jar"
	mainClass = "org.apache.zookeeper.server.ZooKeeperServerMain"
)

// TickTime is the server's tick. ZooKeeper clamps session timeouts to
// [2, 20] ticks, so 200 ms allows sessions from 400 ms (fast expiry tests)
// to 4 s (what the masters watcher asks for).
const TickTime = 200 * time.Millisecond

// startTimeout bounds one JVM start; a loaded 2-core CI box is slow.
const startTimeout = 30 * time.Second

// ErrNotInstalled is returned by Launch when java or the ZooKeeper jars are
// missing.
var ErrNotInstalled = errors.New("zookeeper not installed (want java and " + debianJar + "; Debian package zookeeper)")

// ZK is one running (or stopped) ZooKeeper server.
type ZK struct {
	dir     string // holds zoo.cfg, data/ and zookeeper.out
	port    int
	ownsDir bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// Start launches a server for t and stops it at t.Cleanup. When ZooKeeper is
// not installed the test fails under CI=true and is skipped otherwise.
func Start(t testing.TB) *ZK {
	t.Helper()
	z, err := launch(t.TempDir(), false)
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") != "true" {
			t.Skipf("zkharness: %v", err)
		}
		t.Fatalf("zkharness: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zkharness: server log tail:\n%s", z.LogTail(8<<10))
		}
		z.Close()
	})
	return z
}

// Launch starts a server in a new temporary directory that Close removes.
// For use where no testing.TB lives long enough (TestMain).
func Launch() (*ZK, error) {
	dir, err := os.MkdirTemp("", "zkharness-")
	if err != nil {
		return nil, fmt.Errorf("zkharness: temp dir: %w", err)
	}
	z, err := launch(dir, true)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return z, nil
}

// Installed reports whether Launch can work here.
func Installed() error {
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	if _, err := os.Stat(debianJar); err != nil {
		return fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	return nil
}

func launch(dir string, ownsDir bool) (*ZK, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	z := &ZK{dir: dir, port: port, ownsDir: ownsDir}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("zkharness: data dir: %w", err)
	}
	// forceSync=no: Stop kills the JVM, but the kernel keeps the page
	// cache, so committed data still survives a Restart.
	cfg := fmt.Sprintf(`tickTime=%d
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=
forceSync=no
maxClientCnxns=0
`, TickTime.Milliseconds(), filepath.Join(dir, "data"), port)
	if err := os.WriteFile(z.cfgPath(), []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("zkharness: write zoo.cfg: %w", err)
	}
	if err := z.start(); err != nil {
		z.Close()
		return nil, err
	}
	return z, nil
}

// classpath is the ZooKeeper jar, plus a simple SLF4J binding when one is
// installed (maven's, from other Debian packages), so zookeeper.out holds
// the server's log for LogTail. Without it the server logs nothing.
func classpath() string {
	cp := debianJar
	logJars := []string{"/usr/share/java/maven3-slf4j-provider.jar", "/usr/share/java/maven-shared-utils.jar"}
	for _, j := range logJars {
		if _, err := os.Stat(j); err != nil {
			return cp
		}
	}
	return cp + ":" + strings.Join(logJars, ":")
}

// LogTail returns the last n bytes of the server's output, for a failing
// test to show what the server did.
func (z *ZK) LogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(z.dir, "zookeeper.out"))
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (z *ZK) cfgPath() string { return filepath.Join(z.dir, "zoo.cfg") }

// Addr is the client address, "127.0.0.1:PORT".
func (z *ZK) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(z.port)) }

// Dir holds zoo.cfg, the data directory and the server's output
// (zookeeper.out), for debugging a failed test.
func (z *ZK) Dir() string { return z.dir }

func (z *ZK) start() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(filepath.Join(z.dir, "zookeeper.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("zkharness: log file: %w", err)
	}
	defer out.Close()
	// Startup time is nearly all JVM: class-data sharing, C1 only, the
	// serial GC and a small heap cut it to about half a second.
	cmd := exec.Command("java",
		"-Xshare:auto",
		"-XX:TieredStopAtLevel=1",
		"-XX:+UseSerialGC",
		"-Xms16m", "-Xmx128m",
		"-XX:-UsePerfData",
		"-Djava.net.preferIPv4Stack=true",
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dzookeeper.snapshot.trust.empty=true",
		"-Dzookeeper.log.dir="+z.dir,
		"-cp", classpath(),
		mainClass, z.cfgPath())
	cmd.Dir = z.dir
	cmd.Stdout = out
	cmd.Stderr = out
	// The server must not outlive a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("zkharness: start java: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	z.cmd, z.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		err := handshake(z.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-done:
			z.cmd, z.done = nil, nil
			return fmt.Errorf("zkharness: server exited during start (see %s): %v", filepath.Join(z.dir, "zookeeper.out"), err)
		default:
		}
		if time.Now().After(deadline) {
			z.killLocked()
			return fmt.Errorf("zkharness: server not accepting sessions after %s: %w", startTimeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// handshake opens a real session (ConnectRequest/ConnectResponse): a server
// accepts TCP a little before it can serve, and closes those connections.
func handshake(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	// A server that is still starting may accept and then sit on the
	// request; a short deadline retries sooner than waiting it out.
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	// int32 len | int32 protocolVersion | int64 lastZxidSeen | int32 timeOut
	// | int64 sessionId | int32 passwdLen | passwd[16]
	req := make([]byte, 4+4+8+4+8+4+16)
	binary.BigEndian.PutUint32(req[0:], uint32(len(req)-4))
	binary.BigEndian.PutUint32(req[16:], uint32(2*TickTime.Milliseconds()))
	binary.BigEndian.PutUint32(req[28:], 16)
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("handshake write: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("handshake read: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 16 || n > 1024 {
		return fmt.Errorf("handshake: bad response length %d", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(c, resp); err != nil {
		return fmt.Errorf("handshake read: %w", err)
	}
	// protocolVersion int32 | timeOut int32 | sessionId int64
	if binary.BigEndian.Uint64(resp[8:16]) == 0 {
		return errors.New("handshake: no session granted")
	}
	// Close the session politely so it does not linger on the server:
	// request header xid=1, type=-11 (closeSession).
	var closeReq [12]byte
	binary.BigEndian.PutUint32(closeReq[0:], 8)
	binary.BigEndian.PutUint32(closeReq[4:], 1)
	binary.BigEndian.PutUint32(closeReq[8:], uint32(0xFFFFFFF5))
	c.Write(closeReq[:])
	return nil
}

// Stop kills the server (like a crash; the data directory stays) and waits
// for it to exit. Stopping a stopped server does nothing.
func (z *ZK) Stop() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.killLocked()
}

func (z *ZK) killLocked() {
	if z.cmd == nil {
		return
	}
	// The process group, in case the JVM forked anything.
	syscall.Kill(-z.cmd.Process.Pid, syscall.SIGKILL)
	z.cmd.Process.Kill()
	select {
	case <-z.done:
	case <-time.After(10 * time.Second):
	}
	z.cmd, z.done = nil, nil
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data, so znodes (and sessions that have not expired) survive.
func (z *ZK) Restart() error {
	z.Stop()
	return z.start()
}

// Close stops the server and, for a Launch'ed server, removes its directory.
func (z *ZK) Close() {
	z.Stop()
	if z.ownsDir {
		os.RemoveAll(z.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("zkharness: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
