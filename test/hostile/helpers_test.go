package hostile

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/harness"
)

const (
	// Slack over the baseline: the daemon may keep a socket or two open
	// for its own probes (watchdog) at the moment we look.
	fdSlack = 4
	// The Go runtime never gives OS threads back once created, so a burst
	// of blocking syscalls can raise the count for good; only a runaway
	// (a thread per connection or per query) is a failure.
	threadSlack = 12
)

// daemon is a Spartan under attack plus its resource baseline.
type daemon struct {
	sp          *harness.Spartan
	baseFDs     int
	baseThreads int
}

func startDaemon(t *testing.T, cfg map[string]any) *daemon {
	t.Helper()
	// HTTP: the tests read the daemon's own counters (shed queries).
	sp := harness.Start(t, harness.Options{Config: cfg, HTTP: true})
	d := &daemon{sp: sp}
	// Warm up both paths so lazily opened sockets are in the baseline.
	for i := 0; i < 3; i++ {
		_, _ = harness.Query(sp.Addr, "ready.spartan.", dns.TypeA, false, time.Second)
		_, _ = harness.Query(sp.Addr, "ready.spartan.", dns.TypeA, true, time.Second)
	}
	time.Sleep(200 * time.Millisecond)
	d.baseFDs = harness.OpenFDs(sp.PID())
	d.baseThreads = harness.Threads(sp.PID())
	t.Logf("baseline: %d fds, %d threads", d.baseFDs, d.baseThreads)
	return d
}

// readyWithin asks ready.spartan over network with a 100 ms budget, up to
// three tries (one lost datagram on a loaded 2-core machine is not what we
// are testing), and returns the fastest answer time.
func (d *daemon) readyWithin(network string) (time.Duration, error) {
	var lastErr error
	for try := 0; try < 3; try++ {
		start := time.Now()
		r, err := harness.Query(d.sp.Addr, "ready.spartan.", dns.TypeA, network == "tcp", 100*time.Millisecond)
		took := time.Since(start)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && took <= 100*time.Millisecond {
			return took, nil
		}
		if err == nil {
			err = fmt.Errorf("answer %v after %v", r, took)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return 0, lastErr
}

// checkHealthy asserts the daemon survived: the process runs, ready.spartan
// answers within 100 ms over UDP and TCP, and within a few seconds its open
// fds and threads are back near the baseline.
func (d *daemon) checkHealthy(t *testing.T) {
	t.Helper()
	if d.sp.Exited() {
		t.Fatalf("spartan died; log tail:\n%s", d.sp.LogTail(40))
	}
	for _, network := range []string{"udp", "tcp"} {
		if _, err := d.readyWithin(network); err != nil {
			t.Errorf("ready.spartan over %s not answered within 100 ms: %v", network, err)
		}
	}
	deadline := time.Now().Add(6 * time.Second)
	var fds, threads int
	for {
		fds, threads = harness.OpenFDs(d.sp.PID()), harness.Threads(d.sp.PID())
		if fds <= d.baseFDs+fdSlack && threads <= d.baseThreads+threadSlack {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("resources did not return to baseline: %d fds (baseline %d), %d threads (baseline %d)",
		fds, d.baseFDs, threads, d.baseThreads)
}

// metric reads one of the daemon's counters from /metrics.
func (d *daemon) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, err := d.sp.Metric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = dns.Id()
	return m
}

// udpReplies sends each packet from one socket, then collects every reply
// for wait.
func udpReplies(t *testing.T, addr netip.AddrPort, pkts [][]byte, wait time.Duration) [][]byte {
	t.Helper()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range pkts {
		if _, err := c.Write(p); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	var out [][]byte
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

func dialTCP(t *testing.T, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
