package forwarder

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDialUDP compares what one upstream query's socket costs. net:
// Go's net.DialUDP, then close (runtime poller registration). raw: the
// goroutine race's dialer, socket+connect (rawdial.go), then close; both
// give each query a fresh port. loop-socket: what one socket of the loop's
// pool costs over its life, socket+IP_RECVERR+epoll_ctl+bind+close
// (upsock.go); it carries maxUses queries, so a query pays 1/maxUses of it.
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
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(ep)
	b.Run("loop-socket", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			fd, err := openUDP(0)
			if err != nil {
				b.Fatal(err)
			}
			if err := epollAdd(ep, fd, tagUpstream, 0); err != nil {
				b.Fatal(err)
			}
			// The loop's sockets get their port at the first sendto;
			// bind to port 0 does the same work without sending.
			if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
				b.Fatal(err)
			}
			closeFD(fd)
		}
	})
}
