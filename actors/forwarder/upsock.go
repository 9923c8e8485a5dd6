package forwarder

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The loop's upstream sockets are unconnected and recycled, and every
// upstream query still leaves from a fresh random port (RFC 5452).
//
// Why this works: an unbound UDP socket gets a port at random from the
// ephemeral range at its first sendto (autobind), and gives it up when it
// is disconnected (connect to AF_UNSPEC): Linux unhashes it and clears the
// port unless the port was bound explicitly. So one socket serves query
// after query, each from a new random port, for one extra system call per
// upstream query (the disconnect). An earlier version connected each
// socket to its upstream first: connect, with its route lookup and rehash,
// was about a tenth of the loop's CPU at 5000 qps in a profile.
// Unconnected, the socket checks what the kernel checked for a connected
// one: a reply counts only from the address the query was sent to, and
// IP_RECVERR queues each ICMP error with the address it concerns, so an
// upstream that refuses still fails its attempt at once. While
// disconnected a socket holds no port and receives nothing; what it had
// queued is read away first.
//
// Rejected after measuring: a pool of sockets that keep their port for
// several queries (no disconnect at all). It saved a little more CPU but
// made ports repeat from query to query, which RFC 5452 asks to avoid.

// maxIdleSockets bounds the idle sockets kept per address family. Beyond
// that cap, idle sockets are also trimmed every trimEvery to what the last
// period needed at its busiest, so a burst's worth is not kept open
// forever and an idle loop holds no upstream socket at all.
const (
	maxIdleSockets = 256
	trimEvery      = time.Second
)

type upSock struct {
	fd   int   // -1: closed, the entry is vacant
	fam  int   // 0: IPv4, 1: IPv6
	slot int32 // owning query while in use; -1 when idle
	gen  uint32
	k    int8     // the owner's attempt
	dst  sockaddr // the upstream of the current query: replies must come from it
}

type sockPool struct {
	socks  []upSock
	idle   [2][]int32
	vacant []int32
	opened int // sockets opened over the loop's life

	inUse  int   // sockets owned by an attempt now
	peak   int   // most in use at once since the last trim
	trimAt int64 // next trim (loop clock); 0: none scheduled
}

// dial returns a socket for attempt k of the query in slot s to send to ap
// from; its port is chosen at the send.
func (l *Loop) dial(ap netip.AddrPort, s int32, k int) (int32, error) {
	var sa sockaddr
	sa.set(ap)
	fam := 0
	if sa.raw.Addr.Family == unix.AF_INET6 {
		fam = 1
	}
	p := &l.up
	i, ok := pop(&p.idle[fam])
	if !ok {
		fd, err := openUDP(fam)
		if err != nil {
			return -1, err
		}
		p.opened++
		i = reuse(&p.vacant, &p.socks)
		p.socks[i] = upSock{fd: fd, fam: fam, slot: -1}
		if err := l.add(fd, tagUpstream, i); err != nil {
			l.discard(i)
			return -1, err
		}
	}
	u := &p.socks[i]
	u.slot, u.gen, u.k, u.dst = s, l.slots[s].gen, int8(k), sa
	p.inUse++
	p.peak = max(p.peak, p.inUse)
	return i, nil
}

// hangUp disconnects socket i (giving up its port) and keeps it for the
// next query, or closes it when enough are idle. Unless the caller has just
// read the reply that settled the attempt, it first reads away what the
// socket may still hold (a late reply, a pending ICMP error), so that
// nothing of this upstream query can reach the next one. (After a reply
// only a duplicate could be queued; it would still be read first by the
// next query and fail validation: another address or a new random ID.)
func (l *Loop) hangUp(i int32, replied bool) {
	u := &l.up.socks[i]
	if u.slot >= 0 {
		l.up.inUse--
	}
	u.slot = -1
	if disconnect(u.fd) != 0 {
		l.discard(i)
		return
	}
	if !replied {
		l.drain(u.fd)
	}
	if len(l.up.idle[u.fam]) >= maxIdleSockets {
		l.discard(i)
		return
	}
	l.up.idle[u.fam] = append(l.up.idle[u.fam], i)
	if l.up.trimAt == 0 {
		l.up.trimAt = l.now() + int64(trimEvery)
	}
}

// drain reads away what an upstream socket holds: datagrams and queued
// ICMP errors (a bounded number: a flood is read by later wake-ups).
func (l *Loop) drain(fd int) {
	for range 8 {
		if _, errno := rawRecv(fd, l.buf); errno == unix.EAGAIN {
			break
		}
	}
	var dst sockaddr
	for range 8 {
		if _, _, errno := recvErr(fd, l.buf, &dst); errno != 0 {
			break
		}
	}
}

// trim closes the idle sockets the last period did not need: it keeps as
// many as were in use at the busiest moment beyond those in use now.
func (l *Loop) trim(now int64) {
	p := &l.up
	if p.trimAt == 0 || now < p.trimAt {
		return
	}
	keep := max(p.peak-p.inUse, 0)
	for fam := range p.idle {
		for len(p.idle[fam]) > keep {
			i, _ := pop(&p.idle[fam])
			l.discard(i)
		}
	}
	p.peak = p.inUse
	p.trimAt = 0
	if len(p.idle[0])+len(p.idle[1]) > 0 {
		p.trimAt = now + int64(trimEvery)
	}
}

// discard closes socket i (which also takes it out of the epoll set).
func (l *Loop) discard(i int32) {
	u := &l.up.socks[i]
	closeFD(u.fd)
	*u = upSock{fd: -1, slot: -1}
	l.up.vacant = append(l.up.vacant, i)
}

// closeSockets closes every upstream socket; the loop is ending.
func (l *Loop) closeSockets() {
	for i := range l.up.socks {
		if u := &l.up.socks[i]; u.fd >= 0 {
			closeFD(u.fd)
			*u = upSock{fd: -1, slot: -1}
		}
	}
	l.up.idle = [2][]int32{}
}

// pop takes the last index off a free list; false when it is empty.
func pop(list *[]int32) (int32, bool) {
	n := len(*list)
	if n == 0 {
		return -1, false
	}
	i := (*list)[n-1]
	*list = (*list)[:n-1]
	return i, true
}

// reuse returns an index into *all to use: the last one of the free list,
// or a new zero element's. The loop keeps its query slots and its socket
// entries so: epoll events and timers hold indexes, which stay valid, and
// nothing is allocated once the loop is warm.
func reuse[T any](free *[]int32, all *[]T) int32 {
	if i, ok := pop(free); ok {
		return i
	}
	var zero T
	*all = append(*all, zero)
	return int32(len(*all) - 1)
}
