// Package listener holds the listener actors: one UDP and one TCP actor per
// bind IP. They own their sockets and hand them over across restarts. UDP
// queries are served by forwarder.Loop event loops, one per socket; TCP
// queries by forwarder.Answer, in a goroutine per query.
package listener

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpRecvBuffer is the receive buffer asked for on UDP listener sockets: a
// deep queue absorbs bursts while the process is briefly off-CPU, instead
// of dropping queries. SO_RCVBUFFORCE lifts the rmem_max cap (we have
// CAP_NET_ADMIN); else SO_RCVBUF, best effort.
const udpRecvBuffer = 4 << 20

// listenConfig is how TCP listener sockets are opened. It sets SO_REUSEPORT
// (a restarted listener binds its new socket before the old one is closed,
// so no client finds the port closed) and IP_FREEBIND (a bind IP may be
// added to the link after we start, e.g. when the interface actor is
// restarting). UDP listener sockets get the same options from
// listenUDPRaw.
var listenConfig = net.ListenConfig{
	Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	},
}

// listenUDPRaw opens a non-blocking UDP socket bound to addr with the same
// options as listenConfig plus the receive buffer, as a raw fd that only a
// forwarder.Loop polls.
func listenUDPRaw(addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	domain, freebind := unix.AF_INET, [2]int{unix.IPPROTO_IP, unix.IP_FREEBIND}
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	if ip.Is6() {
		domain, freebind = unix.AF_INET6, [2]int{unix.IPPROTO_IPV6, unix.IPV6_FREEBIND}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
	}
	_ = unix.SetsockoptInt(fd, freebind[0], freebind[1], 1)
	if ip.Is6() {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpRecvBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpRecvBuffer)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	return fd, nil
}

func listenTCP(ctx context.Context, addr netip.AddrPort) (*net.TCPListener, error) {
	l, err := listenConfig.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}
