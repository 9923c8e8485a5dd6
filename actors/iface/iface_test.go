package iface

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/test/netns"
	"github.com/spartan-dns/spartan/test/testkit"
)

var bindIPs = []netip.Addr{
	netip.MustParseAddr("198.51.100.1"),
	netip.MustParseAddr("198.51.100.2"),
	netip.MustParseAddr("198.51.100.3"),
}

// started is a running actor in a test namespace.
type started struct {
	a      *Actor
	h      *netlink.Handle
	logs   *testkit.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, n *netns.NS, name string, ips []netip.Addr, opts ...Option) *started {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	log := zerolog.New(logs)
	a := newActor(config.InterfaceConfig{Manage: true, Name: name}, ips, log, append([]Option{WithNetns(n.Handle())}, opts...)...)
	h, err := netlink.NewHandleAt(n.Handle())
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{a: a, h: h, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(ctx) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // keep it for a second stop
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return within 2s of cancel")
	}
}

// state is the link as netlink reports it: nil link when absent.
func state(h *netlink.Handle, name string) (netlink.Link, map[string]bool) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, nil
	}
	addrs := map[string]bool{}
	list, _ := h.AddrList(link, netlink.FAMILY_ALL)
	for _, a := range list {
		addrs[a.IPNet.String()] = true
	}
	return link, addrs
}

// healthy reports whether the link is up with every ip as a host route.
func healthy(h *netlink.Handle, name string, ips []netip.Addr) bool {
	link, addrs := state(h, name)
	if link == nil || link.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	for _, ip := range ips {
		if !addrs[netip.PrefixFrom(ip, ip.BitLen()).String()] {
			return false
		}
	}
	return true
}

// waitHealthy polls every 5 ms and returns how long healing took.
func waitHealthy(t *testing.T, h *netlink.Handle, name string, ips []netip.Addr, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !healthy(h, name, ips) {
		if time.Since(start) > limit {
			link, addrs := state(h, name)
			t.Fatalf("link %s not healthy within %v: link=%v addrs=%v", name, limit, link != nil, addrs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// dummySupported asks the kernel, in the test namespace, whether it can make
// a dummy link.
func dummySupported(t *testing.T, n *netns.NS) bool {
	t.Helper()
	_, err := n.Run("ip", "link", "add", "probe0", "type", "dummy")
	if err != nil {
		return false
	}
	n.MustRun(t, "ip", "link", "del", "probe0")
	return true
}

func TestNewUnmanagedIsNil(t *testing.T) {
	if s := New(config.InterfaceConfig{Manage: false, Name: "spartan"}, bindIPs, zerolog.Nop()); s != nil {
		t.Fatalf("New with manage=false = %v, want nil", s)
	}
}

func TestInterfaceActor(t *testing.T) {
	n := netns.New(t, "iface")
	hasDummy := dummySupported(t, n)
	t.Logf("kernel dummy driver available: %v", hasDummy)

	// An unrelated link with its own address, down: the actor must leave it
	// exactly as it is.
	n.MustRun(t, "ip", "link", "add", "other", "type", "ifb")
	n.MustRun(t, "ip", "addr", "add", "192.0.2.9/24", "dev", "other")

	s := start(t, n, "spartan", bindIPs)
	took := waitHealthy(t, s.h, "spartan", bindIPs, 2*time.Second)
	t.Logf("link created and configured in %v", took)

	// Which kind this kernel gives is a fact of the machine, logged and
	// asserted once here (dummy where the driver exists, else the ifb
	// fallback), rather than two subtests one of which always skips.
	t.Run("kind", func(t *testing.T) {
		want := KindIfb
		if hasDummy {
			want = KindDummy
		}
		t.Logf("this kernel can create dummy links: %v; want kind %q", hasDummy, want)
		if got := s.a.Kind(); got != want {
			t.Fatalf("Kind() = %q, want %q (dummy supported: %v)", got, want, hasDummy)
		}
		link, _ := state(s.h, "spartan")
		if link.Type() != want {
			t.Fatalf("link type %q, want %q", link.Type(), want)
		}
		if !strings.Contains(s.logs.String(), `"kind":"`+want+`"`) {
			t.Fatalf("log does not name the kind %q:\n%s", want, s.logs.String())
		}
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(line, "link created") {
				t.Logf("creation log: %s", line)
				break
			}
		}
		if want == KindIfb && !strings.Contains(s.logs.String(), "no dummy driver") {
			t.Fatalf("log does not say why ifb was used:\n%s", s.logs.String())
		}
	})
	// An operator's own extra address on the link is not ours to remove.
	n.MustRun(t, "ip", "addr", "add", "203.0.113.7/32", "dev", "spartan")

	t.Run("link deleted comes back within 1s", func(t *testing.T) {
		for i := range 3 {
			n.MustRun(t, "ip", "link", "del", "spartan")
			took := waitHealthy(t, s.h, "spartan", bindIPs, time.Second)
			t.Logf("round %d: link back with its addresses in %v", i, took)
		}
	})
	t.Run("address deleted comes back within 1s", func(t *testing.T) {
		n.MustRun(t, "ip", "addr", "del", "198.51.100.2/32", "dev", "spartan")
		took := waitHealthy(t, s.h, "spartan", bindIPs, time.Second)
		t.Logf("address back in %v", took)
	})
	t.Run("link set down comes back up within 1s", func(t *testing.T) {
		n.MustRun(t, "ip", "link", "set", "spartan", "down")
		took := waitHealthy(t, s.h, "spartan", bindIPs, time.Second)
		t.Logf("link up again in %v", took)
	})
	t.Run("extra address kept", func(t *testing.T) {
		n.MustRun(t, "ip", "addr", "add", "203.0.113.8/32", "dev", "spartan")
		time.Sleep(3 * DefaultReconcileInterval)
		_, addrs := state(s.h, "spartan")
		if !addrs["203.0.113.8/32"] {
			t.Fatalf("operator's address removed: %v", addrs)
		}
	})
	t.Run("other link untouched", func(t *testing.T) {
		link, addrs := state(s.h, "other")
		if link == nil {
			t.Fatal("link other is gone")
		}
		if link.Attrs().Flags&net.FlagUp != 0 {
			t.Fatal("link other was set up")
		}
		if len(addrs) != 1 || !addrs["192.0.2.9/24"] {
			t.Fatalf("link other addresses = %v, want just 192.0.2.9/24", addrs)
		}
	})
	t.Run("cancel stops Serve promptly", func(t *testing.T) {
		start := time.Now()
		s.stop(t)
		t.Logf("Serve returned %v after cancel", time.Since(start))
		// Stopped means stopped: a deleted link stays deleted.
		n.MustRun(t, "ip", "link", "del", "spartan")
		time.Sleep(3 * DefaultReconcileInterval)
		if link, _ := state(s.h, "spartan"); link != nil {
			t.Fatal("link recreated after Serve returned")
		}
	})
}

// TestEventsAloneHeal turns the reconcile timer off (one hour) so only the
// netlink subscription can repair the link, proving the event path works on
// its own.
func TestEventsAloneHeal(t *testing.T) {
	n := netns.New(t, "ifevt")
	s := start(t, n, "spartan", bindIPs, WithReconcileInterval(time.Hour))
	waitHealthy(t, s.h, "spartan", bindIPs, 2*time.Second)
	n.MustRun(t, "ip", "link", "del", "spartan")
	t.Logf("link back in %v via events", waitHealthy(t, s.h, "spartan", bindIPs, time.Second))
	n.MustRun(t, "ip", "addr", "del", "198.51.100.3/32", "dev", "spartan")
	t.Logf("address back in %v via events", waitHealthy(t, s.h, "spartan", bindIPs, time.Second))
}

// TestRestartAndIPv6: suture calls Serve again on the same value after a
// failure; the second run must work, and IPv6 addresses go on as /128.
func TestRestartAndIPv6(t *testing.T) {
	n := netns.New(t, "ifv6")
	ips := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::53")}
	s := start(t, n, "spartan6", ips)
	waitHealthy(t, s.h, "spartan6", ips, 2*time.Second)
	s.stop(t)

	baseline := runtime.NumGoroutine()
	n.MustRun(t, "ip", "link", "del", "spartan6")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.a.Serve(ctx) }()
	waitHealthy(t, s.h, "spartan6", ips, 2*time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("second Serve did not return")
	}
	// The netlink reader goroutines wind down once their sockets close.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d after stop, %d before start", runtime.NumGoroutine(), baseline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
