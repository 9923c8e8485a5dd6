package forwarder

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDialUDP compares what one upstream query's socket costs, each
// time with a fresh random source port. net: Go's net.DialUDP, then close
// (runtime poller registration). raw: the goroutine race's dialer,
// socket+connect (rawdial.go), then close. loop-fresh: a raw socket,
// epoll_ctl, connect, close. loop-recycled: what the loop does instead,
// connect then disconnect (upsock.go).
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
	var sa sockaddr
	sa.set(addr)
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
			if errno := connectTo(fd, &sa); errno != 0 {
				b.Fatal(errno)
			}
			closeFD(fd)
		}
	})
	b.Run("loop-recycled", func(b *testing.B) {
		fd, err := openUDP(0)
		if err != nil {
			b.Fatal(err)
		}
		defer closeFD(fd)
		b.ReportAllocs()
		for range b.N {
			if errno := connectTo(fd, &sa); errno != 0 {
				b.Fatal(errno)
			}
			if errno := disconnect(fd); errno != 0 {
				b.Fatal(errno)
			}
		}
	})
}
