package masters

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/thejerf/suture/v4"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/msg"
)

func isCI() bool { return os.Getenv("CI") == "true" }

// testLogger writes the watcher's logs into the test log, so a failing test
// shows what the watcher saw.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// testConfig is the default config with source set and short intervals,
// so a test using the real clock still sees several polls per second.
func testConfig(source string) *config.Config {
	cfg := config.Default()
	cfg.MasterSource = source
	cfg.MastersRefreshNormal = 200 * time.Millisecond
	cfg.MastersRefreshFail = 50 * time.Millisecond
	cfg.ExhibitorTimeout = 2 * time.Second
	return cfg
}

// start builds the watcher for cfg as the daemon does, runs it, and returns
// the channel it reports to. At cleanup it cancels the context and fails
// the test if Serve does not return promptly.
func start(t testing.TB, cfg *config.Config, lookup Lookup, clk clock.Clock) <-chan msg.ToState {
	t.Helper()
	out := make(chan msg.ToState, 100)
	svc := New(cfg, out, lookup, testLogger(t), clk)
	if svc == nil {
		t.Fatalf("New(%q) returned nil", cfg.MasterSource)
	}
	runService(t, svc)
	return out
}

func runService(t testing.TB, svc suture.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Errorf("Serve did not return within 3s of cancel")
		}
	})
}

// next returns the next report, failing after timeout.
func next(t testing.TB, out <-chan msg.ToState, timeout time.Duration) msg.ToState {
	t.Helper()
	select {
	case m := <-out:
		return m
	case <-time.After(timeout):
		t.Fatalf("no report within %v", timeout)
		return nil
	}
}

func expectMasters(t testing.TB, out <-chan msg.ToState, timeout time.Duration, want ...string) msg.Masters {
	t.Helper()
	m := next(t, out, timeout)
	got, ok := m.(msg.Masters)
	if !ok {
		t.Fatalf("got %#v, want msg.Masters %v", m, want)
	}
	if !equalIPs(got.IPs, want) {
		t.Fatalf("masters = %v, want %v", got.IPs, want)
	}
	return got
}

func expectFailed(t testing.TB, out <-chan msg.ToState, timeout time.Duration, wantErr string) msg.ReadFailed {
	t.Helper()
	m := next(t, out, timeout)
	got, ok := m.(msg.ReadFailed)
	if !ok {
		t.Fatalf("got %#v, want msg.ReadFailed containing %q", m, wantErr)
	}
	if got.Err == nil || !strings.Contains(got.Err.Error(), wantErr) {
		t.Fatalf("ReadFailed error = %v, want it to contain %q", got.Err, wantErr)
	}
	return got
}

// waitMasters skips reports until one carries want (watch-driven sources
// may report the same masters twice, e.g. on a watch and a new session).
// It returns how long it waited.
func waitMasters(t testing.TB, out <-chan msg.ToState, timeout time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(timeout)
	var last any
	for {
		select {
		case m := <-out:
			last = m
			if got, ok := m.(msg.Masters); ok && equalIPs(got.IPs, want) {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("masters %v not reported within %v; last report %s", want, timeout, describe(last))
			return 0
		}
	}
}

func waitFailed(t testing.TB, out <-chan msg.ToState, timeout time.Duration, wantErr string) {
	t.Helper()
	deadline := time.After(timeout)
	var last any
	for {
		select {
		case m := <-out:
			last = m
			if got, ok := m.(msg.ReadFailed); ok && strings.Contains(got.Err.Error(), wantErr) {
				return
			}
		case <-deadline:
			t.Fatalf("ReadFailed %q not reported within %v; last report %s", wantErr, timeout, describe(last))
		}
	}
}

// expectQuiet checks that nothing is reported for d.
func expectQuiet(t testing.TB, out <-chan msg.ToState, d time.Duration) {
	t.Helper()
	select {
	case m := <-out:
		t.Fatalf("unexpected report %s", describe(m))
	case <-time.After(d):
	}
}

func describe(m any) string {
	switch m := m.(type) {
	case nil:
		return "none"
	case msg.Masters:
		return fmt.Sprintf("Masters%v", m.IPs)
	case msg.ReadFailed:
		return fmt.Sprintf("ReadFailed(%v)", m.Err)
	default:
		return fmt.Sprintf("%#v", m)
	}
}

func equalIPs(got []netip.Addr, want []string) bool {
	var w []netip.Addr
	for _, s := range want {
		w = append(w, netip.MustParseAddr(s))
	}
	return slices.Equal(got, w)
}

// dnsServer is an in-process authoritative-ish server on 127.0.0.1: names
// in a answer with those A records, names in rcode with that rcode, others
// NXDOMAIN.
type dnsServer struct {
	mu      sync.Mutex
	a       map[string][]string
	rcode   map[string]int
	queries int
	addr    netip.AddrPort
}

func startDNS(t testing.TB, a map[string][]string) *dnsServer {
	t.Helper()
	s := &dnsServer{a: map[string][]string{}, rcode: map[string]int{}}
	for k, v := range a {
		s.a[dns.Fqdn(k)] = v
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func (s *dnsServer) set(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.a[dns.Fqdn(name)] = ips
}

func (s *dnsServer) setRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcode[dns.Fqdn(name)] = rcode
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	m := new(dns.Msg)
	m.SetReply(r)
	name := strings.ToLower(r.Question[0].Name)
	if rc, ok := s.rcode[name]; ok {
		m.Rcode = rc
	} else if ips, ok := s.a[name]; ok {
		for _, ip := range ips {
			rr, _ := dns.NewRR(fmt.Sprintf("%s 5 IN A %s", name, ip))
			m.Answer = append(m.Answer, rr)
		}
	} else {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
