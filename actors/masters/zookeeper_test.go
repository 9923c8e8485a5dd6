package masters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/msg"
	"github.com/spartan-dns/spartan/test/harness"

	"github.com/spartan-dns/spartan/test/fakeclock"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/test/zkharness"
)

// One ZooKeeper per test binary: the JVM start is the slow part. Tests that
// restart or partition a server use their own (Restart) or a proxy
// (expiry), so sharing is safe; ZooKeeper tests do not run in parallel.
var (
	sharedOnce sync.Once
	sharedZK   *zkharness.ZK
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedZK != nil {
		sharedZK.Close()
	}
	os.Exit(code)
}

func zkServer(t *testing.T) *zkharness.ZK {
	t.Helper()
	sharedOnce.Do(func() { sharedZK, sharedErr = zkharness.Launch() })
	if sharedErr != nil {
		if errors.Is(sharedErr, zkharness.ErrNotInstalled) && !isCI() {
			t.Skip(sharedErr)
		}
		t.Fatal(sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared zookeeper log tail:\n%s", sharedZK.LogTail(8<<10))
		}
	})
	return sharedZK
}

type nopZKLogger struct{}

func (nopZKLogger) Printf(string, ...any) {}

// zkClient is the test's own session, standing in for the Mesos masters.
func zkClient(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(nopZKLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// retry runs op until it succeeds: the test's client may be reconnecting
// after a server restart.
func retry(t *testing.T, what string, op func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := op()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCreate(t *testing.T, c *zk.Conn, p string, data []byte) {
	t.Helper()
	retry(t, "create "+p, func() error {
		_, err := c.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			_, err = c.Set(p, data, -1)
		}
		return err
	})
}

func mustSet(t *testing.T, c *zk.Conn, p string, data []byte) {
	t.Helper()
	retry(t, "set "+p, func() error { _, err := c.Set(p, data, -1); return err })
}

func mustDelete(t *testing.T, c *zk.Conn, p string) {
	t.Helper()
	retry(t, "delete "+p, func() error { return c.Delete(p, -1) })
}

// testMesosPath is a fresh mesos path per test on the shared server.
func testMesosPath(t *testing.T) string {
	return "/" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

func infoPath(mesos string, seq int) string {
	return path.Join(mesos, fmt.Sprintf("json.info_%010d", seq))
}

// masterInfoDoc is a MasterInfo document as Mesos 1.x writes it.
func masterInfoDoc(ip string) []byte {
	return fmt.Appendf(nil, `{"address":{"hostname":"master-%[1]s","ip":%[1]q,"port":5050},"hostname":"master-%[1]s",`+
		`"id":"c6b5a7a8-%[1]s","pid":"master@%[1]s:5050","port":5050,"version":"1.13.0"}`, ip)
}

func zkConfig(t *testing.T, addr, mesos string) *config.Config {
	cfg := testConfig("zookeeper")
	cfg.ZookeeperServers = []string{addr}
	cfg.ZookeeperMesosPath = mesos
	cfg.MastersRefreshNormal = 120 * time.Second
	cfg.MastersRefreshFail = 5 * time.Second
	return cfg
}

// changeTimeout bounds the wait for a watched change. Changes show up in
// milliseconds (the tests log the numbers); the slack is for a loaded CI
// box. Broken watches still fail: the injected clock never fires, so no
// poll can stand in for a missed watch.
const changeTimeout = 3 * time.Second

// latencies collects how long changes took to show up, for the log.
type latencies []time.Duration

func (l latencies) String() string {
	if len(l) == 0 {
		return "none"
	}
	s := slices.Clone([]time.Duration(l))
	slices.Sort(s)
	return fmt.Sprintf("n=%d min=%v median=%v max=%v", len(s), s[0], s[len(s)/2], s[len(s)-1])
}

// TestZookeeperWatch: masters follow creates, changes and deletes of
// json.info_* znodes through watches alone (the injected clock never
// fires, so no poll can help), in milliseconds; other children are ignored.
func TestZookeeperWatch(t *testing.T) {
	z := zkServer(t)
	c := zkClient(t, z.Addr())
	mesos := testMesosPath(t)
	mustCreate(t, c, mesos, nil)
	mustCreate(t, c, path.Join(mesos, "log_replicas"), nil)
	mustCreate(t, c, path.Join(mesos, "info_0000000001"), []byte("\x0a\x24protobuf MasterInfo"))
	mustCreate(t, c, path.Join(mesos, "json.info"), []byte("not a sequence node"))
	mustCreate(t, c, infoPath(mesos, 1), masterInfoDoc("10.0.0.1"))

	resolver := startDNS(t, map[string][]string{"master-4.test": {"10.0.0.4"}})
	lookup := UpstreamLookup([]netip.AddrPort{resolver.addr}, time.Second)
	out := start(t, zkConfig(t, z.Addr(), mesos), lookup, fakeclock.New())
	d := waitMasters(t, out, 10*time.Second, "10.0.0.1")
	t.Logf("first read (connect + session + read): %v", d)

	var lat latencies
	step := func(what string, change func(), want ...string) {
		t.Helper()
		settle(out)
		change()
		d := waitMasters(t, out, changeTimeout, want...)
		lat = append(lat, d)
		t.Logf("%s: visible after %v", what, d)
	}
	step("create", func() { mustCreate(t, c, infoPath(mesos, 2), masterInfoDoc("10.0.0.2")) }, "10.0.0.1", "10.0.0.2")
	step("change", func() { mustSet(t, c, infoPath(mesos, 1), masterInfoDoc("10.0.0.3")) }, "10.0.0.2", "10.0.0.3")
	step("hostname fallback", func() {
		mustCreate(t, c, infoPath(mesos, 3), []byte(`{"hostname":"master-4.test","id":"x","port":5050}`))
	}, "10.0.0.2", "10.0.0.3", "10.0.0.4")
	step("duplicate ip", func() { mustCreate(t, c, infoPath(mesos, 4), masterInfoDoc("10.0.0.2")) }, "10.0.0.2", "10.0.0.3", "10.0.0.4")
	step("delete", func() { mustDelete(t, c, infoPath(mesos, 2)) }, "10.0.0.2", "10.0.0.3", "10.0.0.4")
	step("delete last copy", func() { mustDelete(t, c, infoPath(mesos, 4)) }, "10.0.0.3", "10.0.0.4")
	step("ignored children change", func() {
		mustCreate(t, c, path.Join(mesos, "log_replicas"), []byte("x"))
		mustCreate(t, c, path.Join(mesos, "info_0000000002"), []byte("\x0a"))
	}, "10.0.0.3", "10.0.0.4")

	// A broken znode fails the read (the config actor keeps the masters).
	mustSet(t, c, infoPath(mesos, 3), []byte("{garbage"))
	waitFailed(t, out, changeTimeout, "json.info_0000000003: MasterInfo is not a JSON object")
	step("repaired", func() { mustSet(t, c, infoPath(mesos, 3), masterInfoDoc("10.0.0.5")) }, "10.0.0.3", "10.0.0.5")

	// No masters at all is a failed read, not an empty list.
	mustDelete(t, c, infoPath(mesos, 1))
	mustDelete(t, c, infoPath(mesos, 3))
	waitFailed(t, out, changeTimeout, "no json.info_* masters under "+mesos)
	step("re-registered", func() { mustCreate(t, c, infoPath(mesos, 5), masterInfoDoc("10.0.0.6")) }, "10.0.0.6")

	t.Logf("zookeeper watch latency: %v", lat)
	slices.Sort(lat)
	if med := lat[len(lat)/2]; med > time.Second {
		t.Errorf("median change latency %v, want well under 1s", med)
	}
}

// TestZookeeperMissingPath: a missing mesos path is a failed read; when
// Mesos creates it, the masters show up at once (exists watch).
func TestZookeeperMissingPath(t *testing.T) {
	z := zkServer(t)
	c := zkClient(t, z.Addr())
	mesos := testMesosPath(t)
	clock := fakeclock.New()
	out := start(t, zkConfig(t, z.Addr(), mesos), nil, clock)
	f := expectFailed(t, out, 5*time.Second, mesos+" does not exist")
	if f.Source != "zookeeper" {
		t.Errorf("source %q", f.Source)
	}
	clock.ExpectAfter(t, 5*time.Second)

	mustCreate(t, c, mesos, nil)
	waitFailed(t, out, changeTimeout, "no json.info_* masters")
	mustCreate(t, c, infoPath(mesos, 1), masterInfoDoc("10.0.0.1"))
	waitMasters(t, out, changeTimeout, "10.0.0.1")
}

// TestZookeeperRestart restarts the server under a running watcher: the
// watcher reconnects (same session: the server restores it) and its
// watches still fire for changes made after the restart. While the server
// is down, reads fail and are retried at the fail interval.
func TestZookeeperRestart(t *testing.T) {
	z := zkharness.Start(t)
	c := zkClient(t, z.Addr())
	mesos := "/mesos"
	mustCreate(t, c, mesos, nil)
	mustCreate(t, c, infoPath(mesos, 1), masterInfoDoc("10.0.0.1"))

	clock := fakeclock.New()
	cfg := zkConfig(t, z.Addr(), mesos)
	out := start(t, cfg, nil, clock)
	waitMasters(t, out, 10*time.Second, "10.0.0.1")

	// 1. Restart, then change: the change arrives through the watches.
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	mustCreate(t, c, infoPath(mesos, 2), masterInfoDoc("10.0.0.2"))
	d := waitMasters(t, out, 10*time.Second, "10.0.0.1", "10.0.0.2")
	t.Logf("change made right after a server restart: visible %v after the restart (%v after the change)", time.Since(changed), d)
	d = waitFor(t, out, func() { mustDelete(t, c, infoPath(mesos, 1)) }, changeTimeout, "10.0.0.2")
	t.Logf("after the restart, a delete shows up in %v", d)

	// 2. Down: a poll fails (after the library gives up on the
	// server) and the next is scheduled at the fail interval.
	z.Stop()
	drain(clock.Scheduled)
	clock.Advance(cfg.MastersRefreshNormal)
	waitFailed(t, out, 10*time.Second, "zookeeper")
	waitAfter(t, clock, cfg.MastersRefreshFail)
	clock.Advance(cfg.MastersRefreshFail)
	waitFailed(t, out, 10*time.Second, "zookeeper")

	// 3. Back: the new session triggers a read without any poll.
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	waitMasters(t, out, 10*time.Second, "10.0.0.2")
	t.Logf("after an outage, masters reported %v after the server came back", time.Since(up))
	waitFor(t, out, func() { mustCreate(t, c, infoPath(mesos, 3), masterInfoDoc("10.0.0.3")) }, changeTimeout, "10.0.0.2", "10.0.0.3")
}

// TestZookeeperSessionExpiry partitions the watcher from the server for
// longer than its session timeout, so the server expires the session. The
// library then opens a new session, and the watcher must re-read and re-arm
// every watch on it.
func TestZookeeperSessionExpiry(t *testing.T) {
	z := zkServer(t)
	c := zkClient(t, z.Addr())
	mesos := testMesosPath(t)
	mustCreate(t, c, mesos, nil)
	mustCreate(t, c, infoPath(mesos, 1), masterInfoDoc("10.0.0.1"))

	p := startProxy(t, z.Addr())
	var logs harness.SyncBuffer
	cfg := zkConfig(t, p.addr(), mesos)
	out := make(chan msg.ToState, 100)
	log := zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), &logs)).Level(zerolog.DebugLevel)
	w := New(cfg, out, nil, log, fakeclock.New()).(*zookeeperWatcher)
	w.sessionTimeout = time.Second // the server grants 400ms..4s (tick 200ms)
	runService(t, w)
	waitMasters(t, out, 10*time.Second, "10.0.0.1")

	p.cut()
	mustCreate(t, c, infoPath(mesos, 2), masterInfoDoc("10.0.0.2"))
	time.Sleep(2500 * time.Millisecond) // > session timeout + a tick
	p.heal()
	healed := time.Now()
	waitMasters(t, out, 10*time.Second, "10.0.0.1", "10.0.0.2")
	t.Logf("after the partition healed, masters reported in %v", time.Since(healed))
	if !strings.Contains(logs.String(), "session has been expired") {
		t.Fatalf("the session did not expire; the test proved nothing. Logs:\n%s", logs.String())
	}
	d := waitFor(t, out, func() { mustDelete(t, c, infoPath(mesos, 1)) }, changeTimeout, "10.0.0.2")
	t.Logf("on the new session, a delete shows up in %v", d)
	d = waitFor(t, out, func() { mustSet(t, c, infoPath(mesos, 2), masterInfoDoc("10.0.0.3")) }, changeTimeout, "10.0.0.3")
	t.Logf("on the new session, a data change shows up in %v", d)
}

// TestZookeeperServeStops: Serve returns at once on cancel, also while a
// read waits on a server that refuses connections or accepts and never
// answers (the zk library's own Close waits up to a second for those).
func TestZookeeperServeStops(t *testing.T) {
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		return l.Addr().String()
	}
	blackhole := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		return l.Addr().String()
	}
	tests := []struct {
		name string
		addr func(*testing.T) string
	}{
		{"refused", refused},
		{"blackhole", blackhole},
		{"up", func(t *testing.T) string { return zkServer(t).Addr() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make(chan msg.ToState, 100)
			svc := New(zkConfig(t, tt.addr(t), "/mesos"), out, nil, testLogger(t), fakeclock.New())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { svc.Serve(ctx); close(done) }()
			if tt.name == "up" {
				next(t, out, 5*time.Second)
			} else {
				time.Sleep(300 * time.Millisecond) // a read is waiting now
			}
			start := time.Now()
			cancel()
			select {
			case <-done:
				t.Logf("Serve returned %v after cancel", time.Since(start))
			case <-time.After(500 * time.Millisecond):
				t.Fatal("Serve did not return within 500ms of cancel")
			}
		})
	}
}

// TestZookeeperDownAtStart: with no server, the watcher reports a failed
// read at the fail interval (not never, not in a busy loop), and reads as
// soon as a server appears.
func TestZookeeperDownAtStart(t *testing.T) {
	z := zkharness.Start(t)
	c := zkClient(t, z.Addr())
	mustCreate(t, c, "/mesos", nil)
	mustCreate(t, c, infoPath("/mesos", 1), masterInfoDoc("10.0.0.1"))
	z.Stop()

	clock := fakeclock.New()
	cfg := zkConfig(t, z.Addr(), "/mesos")
	out := start(t, cfg, nil, clock)
	clock.ExpectAfter(t, cfg.MastersRefreshFail)
	expectQuiet(t, out, 50*time.Millisecond)
	clock.Advance(cfg.MastersRefreshFail)
	expectFailed(t, out, 5*time.Second, "zookeeper: not connected to ["+z.Addr()+"]")
	clock.ExpectAfter(t, cfg.MastersRefreshFail)

	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	waitMasters(t, out, 10*time.Second, "10.0.0.1")
}

func TestZookeeperServers(t *testing.T) {
	resolver := startDNS(t, map[string][]string{"zk-1.test": {"127.0.0.1"}})
	lookup := UpstreamLookup([]netip.AddrPort{resolver.addr}, time.Second)
	tests := []struct {
		servers []string
		want    []string
		wantErr string
	}{
		{servers: []string{"127.0.0.1:2181", "zk-1.test:2182", "zk-1.test"}, want: []string{"127.0.0.1:2181", "127.0.0.1:2182", "127.0.0.1:2181"}},
		{servers: []string{"nope.test:2181", "10.0.0.1"}, want: []string{"10.0.0.1:2181"}},
		{servers: []string{"nope.test:2181"}, wantErr: "NXDOMAIN"},
		{servers: nil, wantErr: "zookeeper_servers is empty"},
	}
	for _, tt := range tests {
		cfg := zkConfig(t, "", "/mesos")
		cfg.ZookeeperServers = tt.servers
		w := New(cfg, nil, lookup, testLogger(t), nil).(*zookeeperWatcher)
		got, err := w.resolveServers(t.Context())
		checkErr(t, err, tt.wantErr)
		if !slices.Equal(got, tt.want) {
			t.Errorf("resolveServers(%v) = %v, want %v", tt.servers, got, tt.want)
		}
	}
}

// waitFor applies change and waits for want, returning how long it took.
func waitFor(t *testing.T, out <-chan msg.ToState, change func(), timeout time.Duration, want ...string) time.Duration {
	t.Helper()
	settle(out)
	start := time.Now()
	change()
	waitMasters(t, out, timeout, want...)
	return time.Since(start)
}

// settle discards reports until the watcher has been quiet for 50ms, so
// the next report is caused by what the test does next.
func settle(out <-chan msg.ToState) {
	for {
		select {
		case <-out:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

func drain(ch chan time.Duration) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// waitAfter waits until the watcher schedules a poll at d (it may schedule
// others first, e.g. after a read triggered by a connection event).
func waitAfter(t *testing.T, c *fakeclock.Clock, d time.Duration) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-c.Scheduled:
			if got == d {
				return
			}
		case <-deadline:
			t.Fatalf("no poll scheduled at %v", d)
		}
	}
}

// proxy is a TCP relay that can cut the network between a client and the
// server while the server keeps running: the only way to make a server
// expire a live client's session.
type proxy struct {
	l       net.Listener
	backend string
	mu      sync.Mutex
	down    bool
	conns   []net.Conn
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, backend: backend}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.backend)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
