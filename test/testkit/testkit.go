// Package testkit is the small kit every test package shares: waiting for
// a condition (never sleeping as synchronisation), telling a closed
// connection from a merely silent one, free loopback addresses, and a
// buffer a logger and a test can share. It imports nothing of Spartan's,
// so any package's unit tests can use it without pulling in the end-to-end
// harness.
package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test after limit. The
// limit is a bound for a loaded machine, not a timing assertion.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// WaitClosed reads (and discards) from c until the peer closes it (EOF or a
// reset) and returns how long that took, or an error if it is still open
// after limit: a read timeout is not a closed connection.
func WaitClosed(c net.Conn, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return time.Since(start), fmt.Errorf("still open after %v", limit)
		}
		return time.Since(start), nil
	}
}

// FreeAddr returns a random loopback IP in 127.64.0.0/10 and a port free on
// it for both UDP and TCP. Distinct IPs keep parallel test packages (and
// other worktrees' runs) apart.
func FreeAddr(t testing.TB) (netip.Addr, int) {
	t.Helper()
	for range 100 {
		ip := netip.AddrFrom4([4]byte{127, byte(64 + rand.IntN(64)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			continue
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return ip, port
	}
	t.Fatal("testkit: no free loopback address")
	return netip.Addr{}, 0
}

// FreeAddrPort is FreeAddr as one address.
func FreeAddrPort(t testing.TB) netip.AddrPort {
	t.Helper()
	ip, port := FreeAddr(t)
	return netip.AddrPortFrom(ip, uint16(port))
}

// FreePort returns a free port on ip for network "tcp" or "udp".
func FreePort(t testing.TB, ip netip.Addr, network string) int {
	t.Helper()
	if network == "udp" {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		return u.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a logger, a
// subprocess's output) and readers (the test).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
