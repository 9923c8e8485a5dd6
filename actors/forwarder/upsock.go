package forwarder

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The loop's upstream sockets are unconnected and recycled: each is bound
// once to a random port (the kernel's choice at its first sendto) and
// carries at most maxUses upstream queries, one at a time, before it is
// closed and replaced by a socket on a new random port. An upstream query
// takes an idle socket chosen at random (Forwarder.Rand) and sends with
// sendto; a reply is taken only from the address the query went to (the
// check a connected socket left to the kernel), and IP_RECVERR queues ICMP
// errors with the address they concern, so an upstream that refuses still
// fails its attempt at once.
//
// Why not a connected socket per query, as before: connect and the
// disconnect that freed its port were a seventh of the loop's CPU at 5000
// qps (the kernel rehashes the socket on both), two system calls of about
// a dozen per upstream query. The price is port freshness (RFC 5452 asks
// for an unpredictable port, not a new one): an off-path attacker still
// guesses 16 bits of ID and a port that is random in the ephemeral range;
// one who has learnt a port (by making this node query a server of its
// own) faces the ID, the choice among at least minIdle idle sockets, and at
// most maxUses-1 more queries from that port. docs/ARCHITECTURE.md states
// the figures.

// maxIdleSockets bounds the idle sockets kept per address family. Beyond
// that cap, idle sockets are also trimmed every trimEvery to what the last
// period needed at its busiest, so a burst's worth is not kept open
// forever, and a loop that sent nothing for a period keeps none.
//
// While a loop is sending, minIdle idle sockets per family are kept for the
// random choice, so that a query's port is one of several even at a low
// rate. maxUses: upstream queries per socket (port).
const (
	maxIdleSockets = 256
	minIdle        = 8
	maxUses        = 16
	trimEvery      = time.Second
)

type upSock struct {
	fd   int   // -1: closed, the entry is vacant
	fam  int   // 0: IPv4, 1: IPv6
	slot int32 // owning query while in use; -1 when idle
	gen  uint32
	k    int8     // the owner's attempt
	uses uint16   // upstream queries sent from this socket (port)
	dst  sockaddr // the upstream of the current query: replies must come from it
}

type sockPool struct {
	socks  []upSock
	idle   [2][]int32
	vacant []int32
	opened int // sockets opened over the loop's life

	inUse  int   // sockets owned by an attempt now
	peak   int   // most in use at once since the last trim
	sent   bool  // a socket was taken since the last trim
	trimAt int64 // next trim (loop clock); 0: none scheduled
}

// dial returns a socket to send attempt k of the query in slot s to ap
// from: an idle one chosen at random, or a new one while fewer than
// minIdle are idle.
func (l *Loop) dial(ap netip.AddrPort, s int32, k int) (int32, error) {
	var sa sockaddr
	sa.set(ap)
	fam := 0
	if sa.raw.Addr.Family == unix.AF_INET6 {
		fam = 1
	}
	p := &l.up
	var i int32
	if idle := p.idle[fam]; len(idle) >= minIdle {
		j := l.f.Rand(len(idle))
		i = idle[j]
		idle[j] = idle[len(idle)-1]
		p.idle[fam] = idle[:len(idle)-1]
	} else {
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
	u.uses++
	p.sent = true
	p.inUse++
	p.peak = max(p.peak, p.inUse)
	return i, nil
}

// hangUp gives socket i back to the pool, or closes it once it has
// carried maxUses queries (its successor gets a new port) or enough are
// idle. Unless the caller has just read the reply that settled the
// attempt, it first reads away what the socket may still hold (a late
// reply, a pending ICMP error), so that nothing of this upstream query
// reaches the next one. (What comes later is read then and fails
// validation: another address, or a new random ID.)
func (l *Loop) hangUp(i int32, replied bool) {
	u := &l.up.socks[i]
	if u.slot >= 0 {
		l.up.inUse--
	}
	u.slot = -1
	if !replied {
		l.drain(u.fd)
	}
	if u.uses >= maxUses || len(l.up.idle[u.fam]) >= maxIdleSockets {
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
// many as were in use at the busiest moment beyond those in use now, at
// least minIdle if the period sent anything, none if it did not.
func (l *Loop) trim(now int64) {
	p := &l.up
	if p.trimAt == 0 || now < p.trimAt {
		return
	}
	keep := 0
	if p.sent {
		keep = max(p.peak-p.inUse, minIdle)
	}
	for fam := range p.idle {
		for len(p.idle[fam]) > keep {
			i, _ := pop(&p.idle[fam])
			l.discard(i)
		}
	}
	p.peak, p.sent = p.inUse, false
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
