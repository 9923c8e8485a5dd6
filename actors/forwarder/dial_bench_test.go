package forwarder

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkDialUDP compares the cost of the fresh per-query upstream socket:
// Go's net.DialUDP against the raw socket+connect dialer.
//
//	go test -run '^$' -bench DialUDP ./actors/forwarder
func BenchmarkDialUDP(b *testing.B) {
	addr := netip.MustParseAddrPort("127.0.0.1:9") // nothing is sent
	dialers := map[string]Dialer{"net": netDialer{}, "raw": rawDialer{}}
	for name, d := range dialers {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				c, err := d.Dial("udp", addr, time.Now().Add(time.Second))
				if err != nil {
					b.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				c.Close()
			}
		})
	}
}
