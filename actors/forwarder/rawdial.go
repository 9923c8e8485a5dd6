package forwarder

import (
	"context"
	"fmt"
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
// IPv4 sockets come from pool when it has one ready: created and registered
// with the poller ahead of time, so the query pays only connect (which
// binds a kernel-chosen random port).
// Each socket still carries exactly one upstream query (RFC 5452: a fresh
// random source port per query); the pool only moves socket creation off
// the query's path.
type rawDialer struct {
	tcp  netDialer
	pool *SocketPool
}

func (d rawDialer) Dial(network string, addr netip.AddrPort, deadline time.Time) (Conn, error) {
	if network != "udp" {
		return d.tcp.Dial(network, addr, deadline)
	}
	ip := addr.Addr().Unmap()
	if ip.Is4() {
		sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
		if f := d.pool.take(); f != nil {
			if err := connectFile(f, sa); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		return dialRaw(unix.AF_INET, sa)
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

func connectFile(f *os.File, sa unix.Sockaddr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("connect", cerr)
	}
	return nil
}

// SocketPool is the actor that keeps IPv4 UDP sockets ready for upstream
// queries. While it is down (killed, restarting) queries create their
// sockets themselves, so it is never on the critical path.
type SocketPool struct {
	ready chan *os.File
}

// NewSocketPool returns a pool that keeps up to size sockets ready.
func NewSocketPool(size int) *SocketPool {
	return &SocketPool{ready: make(chan *os.File, size)}
}

func (p *SocketPool) String() string { return "upstream socket pool" }

// take returns a ready socket, or nil when none is (or p is nil).
func (p *SocketPool) take() *os.File {
	if p == nil {
		return nil
	}
	select {
	case f := <-p.ready:
		return f
	default:
		return nil
	}
}

// Serve implements suture.Service: it refills the pool until ctx ends.
func (p *SocketPool) Serve(ctx context.Context) error {
	for {
		f, err := newSocket()
		if err != nil {
			return fmt.Errorf("upstream socket pool: %w", err)
		}
		select {
		case p.ready <- f:
		case <-ctx.Done():
			f.Close()
			return ctx.Err()
		}
	}
}

// Close closes the sockets still in the pool. Call it after the tree stopped.
func (p *SocketPool) Close() {
	for {
		select {
		case f := <-p.ready:
			f.Close()
		default:
			return
		}
	}
}

// newSocket creates an IPv4 UDP socket registered with the poller. It has
// no address yet: connect binds it to a random ephemeral port (the kernel's
// choice), so it can receive nothing before it is used.
func newSocket() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	return os.NewFile(uintptr(fd), "udp-upstream"), nil
}

// UsePool makes f take its upstream UDP sockets from p when p has one ready.
func (f *Forwarder) UsePool(p *SocketPool) { f.Dial = rawDialer{pool: p} }
