package listener

import (
	"context"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Inherited sockets (socket activation, or a reload's hand-over) are bound
// by someone else and outlive this process: systemd keeps its copy open,
// so what clients send while no process reads waits in the kernel. A
// listener given one serves only it: each run's loops (UDP) or its accept
// loop (TCP) use duplicates of it, and no sibling sockets are bound. Why no
// siblings: a SO_REUSEPORT sibling's queue dies with it (a restart or a
// stop would drop what it holds), and the kernel only lets sockets of the
// same user share a port, so a DynamicUser daemon cannot join the group of
// systemd's socket anyway.

// Inherit makes the UDP listener serve f, an inherited UDP socket bound to
// its address, instead of binding its own. Call it before the first Serve.
// f stays the caller's.
func (l *UDP) Inherit(f *os.File) { l.base = f }

// Inherit makes the TCP listener accept on f, an inherited listening
// socket bound to its address. Call it before the first Serve.
func (l *TCP) Inherit(f *os.File) { l.base = f }

// File returns a socket bound to the UDP listener's address for another
// process to serve (a reload): a duplicate of the inherited socket, or
// else a new SO_REUSEPORT sibling. The caller closes it.
func (l *UDP) File() (*os.File, error) {
	if l.base != nil {
		return dupFile(l.base, l.String())
	}
	fd, err := listenUDPRaw(l.addr)
	if err != nil {
		return nil, fmt.Errorf("udp hand-over socket %s: %w", l.addr, err)
	}
	return os.NewFile(uintptr(fd), l.String()), nil
}

// File returns a listening socket bound to the TCP listener's address for
// another process to serve, like UDP.File. The caller closes it.
func (l *TCP) File() (*os.File, error) {
	if l.base != nil {
		return dupFile(l.base, l.String())
	}
	ln, err := listenTCP(context.Background(), l.addr)
	if err != nil {
		return nil, fmt.Errorf("tcp hand-over socket %s: %w", l.addr, err)
	}
	defer ln.Close()
	return ln.File() // a duplicate: the socket stays open once ln is closed
}

// listen returns this run's listening socket: a duplicate of the inherited
// one, or a new SO_REUSEPORT socket.
func (l *TCP) listen(ctx context.Context) (*net.TCPListener, error) {
	if l.base == nil {
		return listenTCP(ctx, l.addr)
	}
	ln, err := net.FileListener(l.base) // duplicates the fd
	if err != nil {
		return nil, fmt.Errorf("inherited socket: %w", err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("inherited socket is not a TCP listener")
	}
	return tl, nil
}

// dupFD returns a close-on-exec, non-blocking duplicate of f's descriptor.
func dupFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	return fd, nil
}

func dupFile(f *os.File, name string) (*os.File, error) {
	fd, err := dupFD(f)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
