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
// give each query a fresh port. loop-fresh: a raw socket with IP_RECVERR,
// epoll_ctl, a port, close. loop-recycled: what the loop does instead
// (upsock.go), a port for the send and a disconnect that gives it up.
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
	b.Run("loop-fresh", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			fd, err := openUDP(0)
			if err != nil {
				b.Fatal(err)
			}
			if err := epollAdd(ep, fd, tagUpstream, 0); err != nil {
				b.Fatal(err)
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
				b.Fatal(err)
			}
			closeFD(fd)
		}
	})
	// The loop's sockets get their port at the sendto (autobind); bind
	// to port 0 does the same work without sending.
	b.Run("loop-recycled", func(b *testing.B) {
		fd, err := openUDP(0)
		if err != nil {
			b.Fatal(err)
		}
		defer closeFD(fd)
		b.ReportAllocs()
		for range b.N {
			if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
				b.Fatal(err)
			}
			if errno := disconnect(fd); errno != 0 {
				b.Fatal(errno)
			}
		}
	})
}
