package listener

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// A TCP listener whose run ends (killed, or shutdown) still answers the
// queries it had already read, then closes the connection; it reads no new
// ones, and Serve returns once they are answered.
func TestTCPCancelAnswersInFlight(t *testing.T) {
	const delay = 300 * time.Millisecond
	up := dnstest.Start(t, "127.0.0.1", dnstest.Slow(delay, dnstest.Answer("10.9.9.9")))
	fwd, cfg := forwarderTo(up.Addr)
	addr := testkit.FreeAddrPort(t)
	l := NewTCP(addr, fwd, cfg.Limits, zerolog.Nop())
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- l.Serve(ctx) }()

	var (
		c   *dns.Conn
		err error
	)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if c, err = dns.Dial("tcp", addr.String()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("slow.example.", dns.TypeA)
	if err := c.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	// Cancel while the query waits for its slow upstream.
	deadline = time.Now().Add(2 * time.Second)
	for up.Count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()

	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatalf("in-flight query lost on cancel: %v", err)
	}
	if r.Id != m.Id || len(r.Answer) != 1 {
		t.Errorf("reply = %v", r)
	}
	select {
	case <-served:
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after the in-flight query was answered")
	}
	// The connection is closed (EOF or reset, not a read timeout): no
	// more queries are read.
	if _, err := testkit.WaitClosed(c.Conn, 3*time.Second); err != nil {
		t.Errorf("connection after the run ended: %v", err)
	}
}

// A client that connects while the listener is between runs waits in the
// old socket's queue and is served by the next run: a restart refuses no
// connection.
func TestTCPRestartRefusesNothing(t *testing.T) {
	fwd, cfg := forwarderTo()
	addr := testkit.FreeAddrPort(t)
	l := NewTCP(addr, fwd, cfg.Limits, zerolog.Nop())
	defer l.Close()

	run := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Serve(ctx) }()
		return cancel, done
	}
	ask := func(c *dns.Conn) error {
		m := new(dns.Msg)
		m.SetQuestion("ready.spartan.", dns.TypeA)
		if err := c.WriteMsg(m); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		r, err := c.ReadMsg()
		if err == nil && len(r.Answer) != 1 {
			t.Errorf("reply = %v", r)
		}
		return err
	}

	cancel, done := run()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := dns.Dial("tcp", addr.String())
		if err == nil {
			err = ask(c)
			c.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	// Between runs: the connection is accepted by the kernel and waits.
	c, err := dns.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatalf("connect between runs: %v", err)
	}
	defer c.Close()
	cancel, done = run()
	defer func() { cancel(); <-done }()
	if err := ask(c); err != nil {
		t.Fatalf("query on a connection made between runs: %v", err)
	}
}
