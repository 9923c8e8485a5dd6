package forwarder

import (
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The loop's upstream sockets are recycled, and a recycled socket still
// gets a fresh random source port for every upstream query (RFC 5452).
//
// Why this works: a UDP socket whose port the kernel chose (autobind, on
// connect) gives the port up when it is disconnected (connect to
// AF_UNSPEC): Linux unhashes it and clears its source port unless the port
// was bound explicitly. The next connect picks a new random port. One
// socket thus serves query after query, each from a fresh port, for the
// price of two connect calls instead of socket + epoll_ctl + connect +
// close: about 6 µs less per upstream query on this VM, two per client
// query (measured, see issue 7's notes). While disconnected a socket holds
// no port and receives nothing; what it had queued is read away first.

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
	k    int8 // the owner's attempt
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

// dial returns a socket connected to ap (a fresh random source port), for
// attempt k of the query in slot s.
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
	if errno := connectTo(u.fd, &sa); errno != 0 {
		l.hangUp(i, false)
		return -1, os.NewSyscallError("connect", errno)
	}
	u.slot, u.gen, u.k = s, l.slots[s].gen, int8(k)
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
// next query and fail validation: a new random ID, most likely another
// question.)
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
	for range 8 {
		if replied {
			break
		}
		if _, errno := rawRecv(u.fd, l.buf); errno == unix.EAGAIN {
			break
		}
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
