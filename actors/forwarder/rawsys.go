package forwarder

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls on upstream sockets. Every one is non-blocking
// (the sockets are O_NONBLOCK, UDP close does not linger), so they are
// made as raw system calls: no scheduler hand-off around each, and the
// runtime's sysmon never sees the loop's thread "in a system call" and
// hands its P to another thread.

// openUDP opens a non-blocking UDP socket, IPv4 (fam 0) or IPv6 (fam 1).
func openUDP(fam int) (int, error) {
	domain := unix.AF_INET
	if fam == 1 {
		domain = unix.AF_INET6
	}
	fd, _, errno := unix.RawSyscall(unix.SYS_SOCKET, uintptr(domain), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("socket", errno)
	}
	return int(fd), nil
}

// connectTo connects fd to sa; an unbound socket gets a random free port.
func connectTo(fd int, sa *sockaddr) syscall.Errno {
	_, _, errno := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), uintptr(sa.len))
	return errno
}

// disconnect dissolves fd's association (connect to AF_UNSPEC). For a
// socket whose port was chosen by the kernel, that releases the port too.
func disconnect(fd int) syscall.Errno {
	sa := unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}
	_, _, errno := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	return errno
}

func closeFD(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

// rawSend writes b on a connected socket.
func rawSend(fd int, b []byte) syscall.Errno {
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	return errno
}

// rawRecv reads one datagram from a connected socket into b.
func rawRecv(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// epollAdd adds fd to the epoll set ep, level-triggered, for reading.
func epollAdd(ep, fd int, tag, slot int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tag, Pad: slot}
	if _, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0); errno != 0 {
		return os.NewSyscallError("epoll_ctl", errno)
	}
	return nil
}

// epollDel removes fd from the epoll set ep.
func epollDel(ep, fd int) {
	unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), unix.EPOLL_CTL_DEL, uintptr(fd), 0, 0, 0)
}

// epollPoll returns the events ready in ep now, without waiting.
func epollPoll(ep int, events []unix.EpollEvent) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(n), errno
}

// mmsghdr is the kernel's struct mmsghdr: one message of a recvmmsg batch
// and the length received into it.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// recvmmsg reads the datagrams queued on fd into the batch's messages,
// without waiting: how many it read.
func recvmmsg(fd int, msgs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}
