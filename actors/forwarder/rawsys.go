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

// openUDP opens a non-blocking, unconnected UDP socket, IPv4 (fam 0) or
// IPv6 (fam 1), with IP_RECVERR: ICMP errors for what it sent are queued
// with the address they concern (recvErr), which an unconnected socket
// would otherwise never hear of. Its port is bound at the first sendto.
func openUDP(fam int) (int, error) {
	domain, level, opt := unix.AF_INET, unix.SOL_IP, unix.IP_RECVERR
	if fam == 1 {
		domain, level, opt = unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_RECVERR
	}
	fd, _, errno := unix.RawSyscall(unix.SYS_SOCKET, uintptr(domain), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("socket", errno)
	}
	on := int32(1)
	if _, _, errno := unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&on)), 4, 0); errno != 0 {
		closeFD(int(fd))
		return -1, os.NewSyscallError("setsockopt IP_RECVERR", errno)
	}
	return int(fd), nil
}

// disconnect dissolves fd's association (connect to AF_UNSPEC). For a
// socket whose port was chosen by the kernel, that releases the port too.
func disconnect(fd int) syscall.Errno {
	sa := unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}
	_, _, errno := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	return errno
}

func closeFD(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

// rawRecv reads one datagram from fd into b (its source unread).
func rawRecv(fd int, b []byte) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// recvFrom reads one datagram from fd into b and its source into from.
func recvFrom(fd int, b []byte, from *sockaddr) (int, syscall.Errno) {
	from.len = uint32(unsafe.Sizeof(from.raw))
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&from.raw)), uintptr(unsafe.Pointer(&from.len)))
	return int(n), errno
}

// recvErr reads one error queued on fd by IP_RECVERR: the errno it
// carries (0 if the kernel gave none), the destination of the datagram
// that caused it (into dst), and as much of that datagram's payload as the
// ICMP message quoted (into b; n bytes). errno is EAGAIN when none is
// queued.
func recvErr(fd int, b []byte, dst *sockaddr) (n int, ee syscall.Errno, errno syscall.Errno) {
	var ctl [64]byte
	iov := unix.Iovec{Base: &b[0], Len: uint64(len(b))}
	msg := unix.Msghdr{
		Name: (*byte)(unsafe.Pointer(&dst.raw)), Namelen: uint32(unsafe.Sizeof(dst.raw)),
		Iov: &iov, Iovlen: 1,
		Control: &ctl[0], Controllen: uint64(len(ctl)),
	}
	r, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if errno != 0 {
		return 0, 0, errno
	}
	dst.len = msg.Namelen
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	if msg.Controllen >= unix.SizeofCmsghdr+uint64(unsafe.Sizeof(unix.SockExtendedErr{})) &&
		(h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR || h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR) {
		ee = syscall.Errno((*unix.SockExtendedErr)(unsafe.Pointer(&ctl[unix.SizeofCmsghdr])).Errno)
	}
	return int(r), ee, 0
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
