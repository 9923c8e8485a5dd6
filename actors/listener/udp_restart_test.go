package listener

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// A UDP listener restarts without losing a query: queries in flight when
// its run ends are answered, queries sent between runs are read by the old
// loops (they keep serving until the new run has bound its sockets), and
// queries sent after the restart are answered by the new run. Close then
// waits for everything and leaves no socket bound.
func TestUDPRestartLosesNothing(t *testing.T) {
	const delay = 200 * time.Millisecond
	up := dnstest.Start(t, "127.0.0.1", dnstest.Slow(delay, dnstest.Answer("10.9.9.9")))
	fwd, _ := forwarderTo(up.Addr)
	addr := testkit.FreeAddrPort(t)
	l := NewUDP(addr, fwd, zerolog.Nop())
	run := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Serve(ctx) }()
		return cancel, done
	}

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := map[uint16]bool{}
	nextID := uint16(100)
	ask := func(n int) {
		for range n {
			m := new(dns.Msg)
			m.SetQuestion("restart.example.", dns.TypeA)
			m.Id = nextID // fixed and distinct: a random repeat would be lost in sent
			nextID++
			b, _ := m.Pack()
			sent[m.Id] = true
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}

	cancel1, done1 := run()
	serving(t, addr) // bound
	ask(10)          // in flight when the run ends
	// In flight: the upstream has them (identical questions may share one
	// upstream query, and a retransmit may add one).
	testkit.WaitFor(t, "the queries upstream", 5*time.Second, func() bool { return up.Count() >= 1 })
	cancel1()
	<-done1
	ask(10) // between runs
	cancel2, done2 := run()
	// Answered by whichever loops serve by then (the old ones until the
	// new run has bound): nothing may be lost either way.
	serving(t, addr)
	ask(10) // after the restart

	buf := make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for len(sent) > 0 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%d queries never answered: %v", len(sent), err)
		}
		var r dns.Msg
		if err := r.Unpack(buf[:n]); err != nil || len(r.Answer) != 1 || !sent[r.Id] {
			t.Fatalf("unexpected reply %v (%v)", &r, err)
		}
		delete(sent, r.Id)
	}

	cancel2()
	<-done2
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return")
	}
	// Nothing holds the address any more: it can be bound without
	// SO_REUSEPORT.
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("address still bound after Close: %v", err)
	}
	pc.Close()
}
