package forwarder

import (
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is a raw UDP listener socket, shared by reference count: the fd is
// closed when the last holder releases it, so a reply can never be written
// to a reused fd number. Loops own raw fds instead of *net.UDPConn so the
// runtime poller never sees their events (the loop has its own epoll).
type Socket struct {
	fd   int
	refs atomic.Int32
}

// NewSocket wraps fd with one reference, the caller's.
func NewSocket(fd int) *Socket {
	s := &Socket{fd: fd}
	s.refs.Store(1)
	return s
}

// tryAcquire takes a reference unless the socket is already closed.
func (s *Socket) tryAcquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release drops a reference and closes the fd with the last one.
func (s *Socket) Release() {
	if s.refs.Add(-1) == 0 {
		_ = unix.Close(s.fd)
	}
}

// ReplyPath is the socket replies go out through once the socket a query
// came in on has been handed over to a restarted listener: any socket bound
// to the same address and port will do. The listener actor points it at
// its newest socket.
type ReplyPath struct {
	sock atomic.Pointer[Socket]
}

// Set makes s (which the caller keeps a reference to) the reply socket.
func (p *ReplyPath) Set(s *Socket) { p.sock.Store(s) }

// send writes b to the client at sa through the current reply socket.
func (p *ReplyPath) send(b []byte, sa *sockaddr) {
	for range 4 { // the socket may be swapped and closed under us: retry
		s := p.sock.Load()
		if s == nil {
			return
		}
		if s.tryAcquire() {
			sa.sendto(s.fd, b)
			s.Release()
			return
		}
	}
}

// sockaddr is a socket address in the kernel's raw form, kept in a query's
// slot so that receiving from and replying to a client allocate nothing.
type sockaddr struct {
	raw unix.RawSockaddrAny
	len uint32
}

func (sa *sockaddr) sendto(fd int, b []byte) syscall.Errno {
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
	return errno
}

// equal reports whether sa and o are the same address and port (of an
// IPv6 address, the flow label and scope are not compared).
func (sa *sockaddr) equal(o *sockaddr) bool {
	if sa.raw.Addr.Family != o.raw.Addr.Family {
		return false
	}
	switch sa.raw.Addr.Family {
	case unix.AF_INET:
		a, b := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw)), (*unix.RawSockaddrInet4)(unsafe.Pointer(&o.raw))
		return a.Port == b.Port && a.Addr == b.Addr
	case unix.AF_INET6:
		a, b := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw)), (*unix.RawSockaddrInet6)(unsafe.Pointer(&o.raw))
		return a.Port == b.Port && a.Addr == b.Addr
	}
	return false
}

// set stores ap (IPv4 addresses unmapped).
func (sa *sockaddr) set(ap netip.AddrPort) {
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		putPort(&p.Port, ap.Port())
		sa.len = unix.SizeofSockaddrInet4
		return
	}
	p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw))
	*p = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	putPort(&p.Port, ap.Port())
	sa.len = unix.SizeofSockaddrInet6
}

// putPort stores port in network byte order, as the raw structs hold it.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
