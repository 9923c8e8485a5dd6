package listener

import (
	"net"

	"golang.org/x/sys/unix"
)

// Connections the TCP listener cuts off to protect itself (RFC 7766
// 6.2.3-6.2.4: a server may close connections it cannot afford), by reason.
const (
	cutGarbage = iota // a frame that is not a DNS message
	cutUnread         // replies left unread past UnreadLimit
	cutBlocked        // a reply write blocked past the write timeout
	numCuts
)

var cutNames = [numCuts]string{"garbage_frame", "unread_replies", "write_blocked"}

// defaultUnreadLimit is four of the largest replies: enough for any client
// that reads, however slowly its network drains; a client over it has
// stopped reading.
const defaultUnreadLimit = 4 * 65535

func (l *TCP) cut(reason int) { l.cuts[reason].Add(1) }

// EachCut calls fn with every reason connections are cut off for and how
// many were (metrics).
func (l *TCP) EachCut(fn func(reason string, n uint64)) {
	for i := range numCuts {
		fn(cutNames[i], l.cuts[i].Load())
	}
}

// unreadOver reports whether the bytes c has sent that its peer has not
// acknowledged yet (SIOCOUTQ) pass UnreadLimit. Those pile up only once the
// client's own receive buffer is full: a client that does not read.
func (l *TCP) unreadOver(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCOUTQ) })
	return n > l.UnreadLimit
}
