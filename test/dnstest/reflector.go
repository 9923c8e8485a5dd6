package dnstest

import (
	"net"
	"net/netip"
	"testing"
)

// Reflector is the cheapest possible valid upstream: it answers every UDP
// query with the query itself, QR set (NOERROR, question echoed, no
// answers). Benchmarks use it so that the upstream is never the bottleneck.
type Reflector struct {
	Addr netip.AddrPort
	conn *net.UDPConn
	done chan struct{}
}

// StartReflector runs a reflector on ip until the test or benchmark ends.
func StartReflector(tb testing.TB, ip string) *Reflector {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	r := &Reflector{Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), conn: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			buf[2] |= 0x80
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	tb.Cleanup(func() { c.Close(); <-r.done })
	return r
}
