package listener

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// serveTCP runs a TCP listener with limits until the test ends, and waits
// until it answers.
func serveTCP(t *testing.T, limits config.LimitsConfig) (*TCP, string) {
	t.Helper()
	fwd, _ := forwarderTo()
	addr := testkit.FreeAddrPort(t)
	l := NewTCP(addr, fwd, limits, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done; l.Close() })
	testkit.WaitFor(t, "the TCP listener to answer", 5*time.Second, func() bool {
		c, err := dns.DialTimeout("tcp", addr.String(), 100*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		return askTCP(c, "ready.spartan.") == nil
	})
	return l, addr.String()
}

func askTCP(c *dns.Conn, name string) error {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	if err := c.WriteMsg(m); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.ReadMsg()
	return err
}

// tcp_connections is how many connections are served at once: that many
// are kept, the next is closed at once and counted.
func TestTCPConnectionLimit(t *testing.T) {
	_, cfg := forwarderTo()
	limits := cfg.Limits
	limits.TCPConnections = 2
	l, addr := serveTCP(t, limits)
	refused0 := l.Refused.Load()
	var kept []*dns.Conn
	for i := range 2 {
		c, err := dns.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := askTCP(c, "ready.spartan."); err != nil {
			t.Fatalf("connection %d of 2: %v", i, err)
		}
		kept = append(kept, c)
	}
	// The third is reset at once; the reset may even beat the end of
	// Dial, which is the same verdict.
	over, err := net.DialTimeout("tcp", addr, time.Second)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatal(err)
	default:
		defer over.Close()
		if _, err := testkit.WaitClosed(over, 2*time.Second); err != nil {
			t.Fatalf("third connection with tcp_connections 2: %v", err)
		}
	}
	testkit.WaitFor(t, "the refusal counted", 2*time.Second, func() bool { return l.Refused.Load()-refused0 >= 1 })
	if n := l.Refused.Load() - refused0; n != 1 {
		t.Errorf("refused counter rose by %d, want 1", n)
	}
	for i, c := range kept {
		if err := askTCP(c, "ready.spartan."); err != nil {
			t.Errorf("kept connection %d no longer served: %v", i, err)
		}
	}
	// A refusal takes no slot: once a kept connection is closed, a new
	// one is served again (the listener sees the close a moment later).
	kept[0].Close()
	testkit.WaitFor(t, "a new connection served after one closed", 5*time.Second, func() bool {
		c, err := dns.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		return askTCP(c, "ready.spartan.") == nil
	})
}

// tcp_message_max is the largest query read: a frame of exactly that size
// is answered.
func TestTCPQueryAtTheSizeLimit(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("ready.spartan.", dns.TypeA)
	q, _ := m.Pack()
	_, cfg := forwarderTo()
	limits := cfg.Limits
	limits.TCPMessageMax = len(q)
	_, addr := serveTCP(t, limits)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := dnstest.WriteFrame(c, q); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := dnstest.ReadFrame(c); err != nil {
		t.Fatalf("a %d-byte query with tcp_message_max %d: %v", len(q), len(q), err)
	}
}

// Close releases the listening socket a finished run left for the next
// one: afterwards nothing listens on the address.
func TestTCPCloseReleasesTheSocket(t *testing.T) {
	fwd, cfg := forwarderTo()
	addr := testkit.FreeAddrPort(t)
	l := NewTCP(addr, fwd, cfg.Limits, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	testkit.WaitFor(t, "the TCP listener to accept", 5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr.String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	cancel()
	<-done
	l.Close()
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("connection accepted after Close: the listening socket was kept")
	}
}
