package forwarder

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvBatchLen is how many client queries one recvmmsg reads.
const recvBatchLen = 16

// recvBatch reads the listener socket's datagrams recvBatchLen at a time,
// in one system call (recvmmsg): under load a wake-up finds several
// queries queued, and at any load it saves the read that only learns
// EAGAIN, since a short batch says the queue is drained. Each message has
// a buffer of the largest datagram, so nothing is truncated; the buffers
// are allocated once and only the bytes received are ever touched, so the
// resident memory is what the queries need.
type recvBatch struct {
	msgs [recvBatchLen]mmsghdr
	iovs [recvBatchLen]unix.Iovec
	from [recvBatchLen]sockaddr
	bufs []byte
}

const maxDatagram = 65535

func newRecvBatch() *recvBatch {
	b := &recvBatch{bufs: make([]byte, recvBatchLen*maxDatagram)}
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i*maxDatagram]
		b.iovs[i].SetLen(maxDatagram)
		h := &b.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.from[i].raw))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// read reads up to max datagrams from fd; how many (0: none queued).
func (b *recvBatch) read(fd, max int) int {
	n := min(max, recvBatchLen)
	for i := range n {
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrAny
		b.msgs[i].hdr.Flags = 0
	}
	got, errno := recvmmsg(fd, b.msgs[:n])
	if errno != 0 || got < 0 {
		return 0
	}
	for i := range got {
		b.from[i].len = b.msgs[i].hdr.Namelen
	}
	return got
}

// packet is datagram i of the last read.
func (b *recvBatch) packet(i int) []byte {
	return b.bufs[i*maxDatagram : i*maxDatagram+int(b.msgs[i].n)]
}
