package forwarder

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errNotAReply marks a datagram that is consumed and ignored: empty, or
// larger than limits.udp_payload_max.
var errNotAReply = errors.New("empty or oversized datagram")

// datagramFits says whether an upstream datagram of n bytes can be a reply:
// neither empty nor larger than limits.udp_payload_max (max). What does not
// fit is ignored as if never received, by both engines.
func datagramFits(n, max int) bool { return n > 0 && n <= max }

// readDatagram reads one datagram from an upstream socket into a slice of
// exactly its size. It first peeks at the datagram's real length
// (MSG_PEEK|MSG_TRUNC), so any size up to max passes through whole (RFC
// 5625: never cut what the upstream sent) without keeping a 64 KiB buffer
// per in-flight query, and without copying the reply out of one.
func readDatagram(conn Conn, max int) ([]byte, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if !datagramFits(n, max) {
			return nil, errNotAReply
		}
		return buf[:n:n], nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var msg []byte
	var rerr error
	// The first attempt usually finds nothing (EAGAIN) and could look
	// skippable, but it is not: RawConn.Read resets the poller's recorded
	// readiness before calling us, so a reply that already arrived is only
	// seen by trying.
	err = rc.Read(func(fd uintptr) bool {
		var one [1]byte
		n, errno := recv(fd, one[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		if errno == unix.EAGAIN {
			return false // nothing yet: wait for the poller
		}
		if errno != 0 {
			rerr = errno
			return true
		}
		if !datagramFits(n, max) {
			_, _ = recv(fd, one[:], 0) // consume it
			rerr = errNotAReply
			return true
		}
		msg = make([]byte, n)
		if _, errno = recv(fd, msg, 0); errno != 0 {
			rerr = errno
		}
		return true
	})
	if err != nil {
		return nil, err // deadline exceeded, closed
	}
	return msg, rerr
}

// recv is recvfrom(2) without a source address (the socket is connected),
// so it allocates nothing.
func recv(fd uintptr, b []byte, flags int) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), errno
}
