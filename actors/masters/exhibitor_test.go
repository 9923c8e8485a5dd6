package masters

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/fakeclock"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/msg"
)

// fakeExhibitor serves whatever the test sets, at the real status path.
type fakeExhibitor struct {
	mu     sync.Mutex
	status int
	body   string
	delay  time.Duration
	hits   int
	srv    *httptest.Server
}

func startExhibitor(t *testing.T, body string) *fakeExhibitor {
	t.Helper()
	f := &fakeExhibitor{status: 200, body: body}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != config.ExhibitorStatusPath {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.hits++
		status, body, delay := f.status, f.body, f.delay
		f.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeExhibitor) set(status int, body string, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.delay = status, body, delay
}

func (f *fakeExhibitor) hostport() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func exhibitorBody(hosts ...string) string {
	var parts []string
	for i, h := range hosts {
		parts = append(parts, fmt.Sprintf(`{"code":3,"description":"serving","hostname":%q,"isLeader":%t}`, h, i == 0))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestExhibitorSchedule walks one watcher through good reads, changes and
// every kind of failure, with an injected clock: each read reports exactly
// one message, and the next poll comes after the normal interval following
// a good read and after the fail interval following a failed one.
func TestExhibitorSchedule(t *testing.T) {
	ex := startExhibitor(t, realExhibitor)
	clock := fakeclock.New()
	cfg := testConfig("exhibitor_uri")
	cfg.ExhibitorURI = ex.srv.URL + config.ExhibitorStatusPath
	cfg.MastersRefreshNormal = 120 * time.Second
	cfg.MastersRefreshFail = 5 * time.Second
	cfg.ExhibitorTimeout = time.Second // short, yet long enough for a loaded box
	out := start(t, cfg, nil, clock)

	// First read happens at once, without the clock moving.
	m := expectMasters(t, out, 5*time.Second, "10.0.4.160", "10.0.5.12", "10.0.6.77")
	if m.Source != "exhibitor_uri" || !m.At.Equal(clock.Now()) {
		t.Errorf("Masters source=%q at=%v, want exhibitor_uri at the clock's now", m.Source, m.At)
	}
	clock.ExpectAfter(t, cfg.MastersRefreshNormal)

	steps := []struct {
		name    string
		status  int
		body    string
		delay   time.Duration
		want    []string // masters, or nil for a failed read
		wantErr string
	}{
		{name: "change, unsorted with a duplicate", status: 200, body: exhibitorBody("10.0.0.3", "10.0.0.1", "10.0.0.3"), want: []string{"10.0.0.1", "10.0.0.3"}},
		{name: "500", status: 500, body: "internal error", wantErr: "HTTP status 500"},
		{name: "garbage", status: 200, body: "<html>oops</html>", wantErr: "not a JSON array"},
		{name: "empty list", status: 200, body: "[]", wantErr: "no servers"},
		{name: "wrong shape", status: 200, body: `{"servers":[]}`, wantErr: "not a JSON array"},
		{name: "invalid hostname", status: 200, body: exhibitorBody("10.0.0.1", "not a host"), wantErr: "not a valid IP or DNS name"},
		{name: "hostname without resolver", status: 200, body: exhibitorBody("master-1.test"), wantErr: `"master-1.test"`},
		{name: "timeout", status: 200, body: realExhibitor, delay: 5 * time.Second, wantErr: "timed out after 1s"},
		{name: "404", status: 404, body: "not found", wantErr: "HTTP status 404"},
		{name: "recovers", status: 200, body: exhibitorBody("10.0.0.2"), want: []string{"10.0.0.2"}},
		{name: "unchanged", status: 200, body: exhibitorBody("10.0.0.2"), want: []string{"10.0.0.2"}},
	}
	interval := cfg.MastersRefreshNormal
	for _, st := range steps {
		ex.set(st.status, st.body, st.delay)
		clock.Advance(interval)
		if st.want != nil {
			expectMasters(t, out, 5*time.Second, st.want...)
			interval = cfg.MastersRefreshNormal
		} else {
			expectFailed(t, out, 5*time.Second, st.wantErr)
			interval = cfg.MastersRefreshFail
		}
		clock.ExpectAfter(t, interval)
		// One read, one report: nothing else until the clock moves.
		expectQuiet(t, out, 20*time.Millisecond)
	}
}

// TestExhibitorAddress checks exhibitor_address as host (port 8181) and
// host:port, with the host resolved through the Lookup, and master
// hostnames resolved the same way.
func TestExhibitorAddress(t *testing.T) {
	ex := startExhibitor(t, exhibitorBody("master-1.test", "master-2.test", "10.0.0.9"))
	resolver := startDNS(t, map[string][]string{
		"exhibitor.test": {"127.0.0.1"},
		"master-1.test":  {"10.0.0.1"},
		"master-2.test":  {"10.0.0.2", "10.0.0.1"},
	})
	lookup := UpstreamLookup([]netip.AddrPort{resolver.addr}, time.Second)
	_, port, _ := net.SplitHostPort(ex.hostport())

	t.Run("hostname:port", func(t *testing.T) {
		clock := fakeclock.New()
		cfg := testConfig("exhibitor")
		cfg.ExhibitorAddress = "exhibitor.test:" + port
		out := start(t, cfg, lookup, clock)
		expectMasters(t, out, 5*time.Second, "10.0.0.1", "10.0.0.2", "10.0.0.9")
		clock.ExpectAfter(t, cfg.MastersRefreshNormal)

		// A master whose name stops resolving fails the read and names it.
		ex.set(200, exhibitorBody("master-1.test", "master-3.test"), 0)
		clock.Advance(cfg.MastersRefreshNormal)
		expectFailed(t, out, 5*time.Second, `master hostname "master-3.test"`)
		clock.ExpectAfter(t, cfg.MastersRefreshFail)

		resolver.set("master-3.test", "10.0.0.3")
		clock.Advance(cfg.MastersRefreshFail)
		expectMasters(t, out, 5*time.Second, "10.0.0.1", "10.0.0.3")
	})

	t.Run("unresolvable exhibitor", func(t *testing.T) {
		cfg := testConfig("exhibitor")
		cfg.ExhibitorAddress = "nowhere.test:" + port
		out := start(t, cfg, lookup, fakeclock.New())
		expectFailed(t, out, 5*time.Second, "NXDOMAIN")
	})

	t.Run("default port", func(t *testing.T) {
		// Nothing listens on 127.0.0.1:8181 in tests (if something does,
		// it is not an Exhibitor serving this body, so the read still fails).
		cfg := testConfig("exhibitor")
		cfg.ExhibitorAddress = "127.0.0.1"
		out := start(t, cfg, lookup, fakeclock.New())
		expectFailed(t, out, 5*time.Second, "http://127.0.0.1:8181/exhibitor/v1/cluster/status")
	})

	t.Run("unset", func(t *testing.T) {
		cfg := testConfig("exhibitor")
		out := start(t, cfg, lookup, fakeclock.New())
		expectFailed(t, out, 5*time.Second, "exhibitor_address is not set")
	})
}

// TestExhibitorRealClock uses real short intervals and asserts counts, not
// wall time: while the server fails, polls come at the fail interval (many
// per normal interval); once it recovers, at the normal interval.
func TestExhibitorRealClock(t *testing.T) {
	ex := startExhibitor(t, realExhibitor)
	ex.set(500, "down", 0)
	cfg := testConfig("exhibitor_uri")
	cfg.ExhibitorURI = ex.srv.URL + config.ExhibitorStatusPath
	cfg.MastersRefreshNormal = 400 * time.Millisecond
	cfg.MastersRefreshFail = 20 * time.Millisecond
	out := start(t, cfg, nil, clock.Real{})

	count := func(d time.Duration) (masters, failed int) {
		end := time.After(d)
		for {
			select {
			case m := <-out:
				switch m.(type) {
				case msg.Masters:
					masters++
				case msg.ReadFailed:
					failed++
				}
			case <-end:
				return
			}
		}
	}
	// 25 polls fit in 500ms; ask for a fraction so a loaded CI box passes,
	// while a watcher stuck on the normal interval (at most 2 polls) fails.
	_, failed := count(500 * time.Millisecond)
	if failed < 3 {
		t.Errorf("%d failed reads in 500ms at a 20ms fail interval, want at least 3", failed)
	}
	ex.set(200, realExhibitor, 0)
	// Let the first good read land, then count over one normal interval.
	waitMasters(t, out, time.Second, "10.0.4.160", "10.0.5.12", "10.0.6.77")
	// Only an upper bound: a loaded box may poll less often, never more.
	masters, failed := count(1000 * time.Millisecond)
	if failed != 0 || masters > 3 {
		t.Errorf("after recovery: %d good and %d failed reads in 1s at a 400ms normal interval, want at most 3 good, 0 failed", masters, failed)
	}
}

// TestChangeLatencyPolled measures how long a change takes to show up for
// the polled sources: at most one normal interval (plus the read itself).
func TestChangeLatencyPolled(t *testing.T) {
	const normal = 100 * time.Millisecond
	ex := startExhibitor(t, exhibitorBody("10.0.0.1"))
	cfg := testConfig("exhibitor_uri")
	cfg.ExhibitorURI = ex.srv.URL + config.ExhibitorStatusPath
	cfg.MastersRefreshNormal = normal
	out := start(t, cfg, nil, clock.Real{})
	waitMasters(t, out, time.Second, "10.0.0.1")

	var worst time.Duration
	for i := 2; i <= 6; i++ {
		ip := fmt.Sprintf("10.0.0.%d", i)
		ex.set(200, exhibitorBody(ip), 0)
		// Generous: this measures, and a loaded CI box stalls.
		d := waitMasters(t, out, 5*time.Second, ip)
		worst = max(worst, d)
	}
	t.Logf("exhibitor: change visible after at most %v with masters_refresh_interval_normal=%v", worst, normal)
}

// TestSendDoesNotBlockShutdown: a receiver that never reads must not keep
// Serve from returning.
func TestSendDoesNotBlockShutdown(t *testing.T) {
	ex := startExhibitor(t, realExhibitor)
	cfg := testConfig("exhibitor_uri")
	cfg.ExhibitorURI = ex.srv.URL + config.ExhibitorStatusPath
	out := make(chan msg.ToState) // unbuffered, never read
	svc := New(cfg, out, nil, testLogger(t), clock.Real{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	time.Sleep(100 * time.Millisecond) // blocked in the send by now
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Serve blocked in a send after cancel")
	}
}

// TestServeReturnsDuringSlowRead: cancel while an HTTP request hangs.
func TestServeReturnsDuringSlowRead(t *testing.T) {
	ex := startExhibitor(t, realExhibitor)
	ex.set(200, realExhibitor, 10*time.Second)
	cfg := testConfig("exhibitor_uri")
	cfg.ExhibitorURI = ex.srv.URL + config.ExhibitorStatusPath
	cfg.ExhibitorTimeout = 30 * time.Second
	svc := New(cfg, make(chan msg.ToState, 10), nil, testLogger(t), clock.Real{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case <-done:
		t.Logf("Serve returned %v after cancel", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return while a read hung")
	}
}

func TestNewNone(t *testing.T) {
	for _, src := range []string{"none", ""} {
		cfg := config.Default()
		cfg.MasterSource = src
		if svc := New(cfg, make(chan msg.ToState), nil, testLogger(t), nil); svc != nil {
			t.Errorf("New(%q) = %v, want nil", src, svc)
		}
	}
	cfg := testConfig("etcd")
	out := start(t, cfg, nil, nil)
	expectFailed(t, out, 5*time.Second, `unknown master_source "etcd"`)
}
