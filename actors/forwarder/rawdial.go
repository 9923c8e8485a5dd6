package forwarder

import (
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// rawDialer opens upstream UDP sockets with plain system calls and hands
// them to the runtime poller through os.NewFile. Go's net.DialUDP does the
// same work plus setsockopt and getsockname calls and several allocations.
// connect makes the kernel filter replies by source address and report
// ICMP errors (a dead upstream fails fast).
//
// Each of these sockets carries exactly one upstream query and is closed
// after it: a fresh random source port per query (RFC 5452). The UDP event
// loop gets the same fresh port per query more cheaply, by recycling its
// sockets through a disconnect (upsock.go); that recycling is done inline,
// by the query that needs a socket. Measured and rejected: a pool of
// sockets created ahead of time by a background actor. On two cores it
// adds no capacity (the work is the same) and its refills compete with
// queries: p99 got worse (measured with BenchmarkUDPForward; see the
// issue 7 notes).
type rawDialer struct {
	tcp netDialer
}

func (d rawDialer) Dial(network string, addr netip.AddrPort, deadline time.Time) (Conn, error) {
	if network != "udp" {
		return d.tcp.Dial(network, addr, deadline)
	}
	ip := addr.Addr().Unmap()
	if ip.Is4() {
		return dialRaw(unix.AF_INET, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()})
	}
	return dialRaw(unix.AF_INET6, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()})
}

func dialRaw(family int, sa unix.Sockaddr) (Conn, error) {
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
