package forwarder

import (
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// rawDialer opens upstream UDP sockets with two system calls (socket,
// connect) and hands them to the runtime poller through os.NewFile. Go's
// net.DialUDP does the same work plus setsockopt and getsockname calls and
// several allocations, and a per-query socket is the hot path's biggest
// cost. connect still makes the kernel pick a random ephemeral port and
// filter replies by source address, exactly as before.
type rawDialer struct{ tcp netDialer }

func (d rawDialer) Dial(network string, addr netip.AddrPort, deadline time.Time) (Conn, error) {
	if network != "udp" {
		return d.tcp.Dial(network, addr, deadline)
	}
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if addr.Addr().Is4() || addr.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	// A non-blocking fd makes os.NewFile register it with the poller, so
	// reads honour deadlines without blocking a thread.
	return os.NewFile(uintptr(fd), "udp-upstream"), nil
}
