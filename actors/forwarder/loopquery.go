package forwarder

import (
	"os"
	"time"

	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/actors/state"
	"golang.org/x/sys/unix"
)

// loopQuery is one client query in flight in a Loop: the race of
// race.go/exchange.go as a state machine. A slot is reused after the query
// ends; gen tells its timers apart from a predecessor's.
type loopQuery struct {
	inUse   bool
	decided bool // the client has its reply; only losers are still read
	hedged  bool
	gen     uint32

	q        []byte // the client's query; its ID is rewritten per attempt
	qEnd     int
	clientID uint16
	client   sockaddr
	kind     RouteKind
	udpMax   int
	start    int64
	timeout  int64 // upstream_timeout when the query came
	hedge    int64 // the route's hedge delay when the query came

	rules raceRules
	att   [maxSends]loopAttempt
	natt  int

	// The cache (loopcache.go): the flight this query's race is for (nil
	// when the cache is off or the query cannot be cached); clientDone: the
	// client has its answer (a stale one) or there is no client (a
	// prefetch), while the race goes on; staleFired: the wait is over.
	fl         *flight
	clientDone bool
	staleFired bool
}

// loopAttempt is one upstream of a query's race, on a socket of its own
// while it is out (upsock.go): a reply counts only from the address the
// query was sent to, and an ICMP error for that address (the upstream
// refusing) fails the attempt at once.
//
// Its score (state.Attempt) counts its outcome for the upstream's health,
// by the same rule as the goroutine race's.
type loopAttempt struct {
	score state.Attempt
	sock  int32 // index in the loop's socket pool; -1 once settled
	up    int8  // the upstream's index in the route (raceRules)
	id    uint16
	sent  int64 // loop clock
	rcode uint8 // for the debug log: the reply's rcode + 1; 0: no reply; failedFast
}

func (a *loopAttempt) outstanding() bool { return !a.score.Ended() }

// hangUpAttempt gives an attempt's socket back to the pool as soon as the
// attempt is settled; replied says its reply was just read.
func (l *Loop) hangUpAttempt(a *loopAttempt, replied bool) {
	if a.sock >= 0 {
		l.hangUp(a.sock, replied)
		a.sock = -1
	}
}

// alloc returns a free slot, marked in use.
func (l *Loop) alloc() int32 {
	s := reuse(&l.free, &l.slots)
	q := &l.slots[s]
	q.inUse, q.decided, q.hedged, q.natt = true, false, false, 0
	q.clientDone, q.staleFired = false, false
	l.active++
	return s
}

// freeQuery ends a query for good: its sockets close (which also takes
// them out of the epoll set) and the slot is reused.
func (l *Loop) freeQuery(s int32) {
	q := &l.slots[s]
	for k := range q.natt {
		l.hangUpAttempt(&q.att[k], false)
	}
	if !q.decided { // only when the loop is torn down by a panic
		l.f.End()
	}
	if q.fl != nil { // ditto: its waiters' clients will retry
		l.f.flights.finish(q.fl)
		q.fl = nil
	}
	q.inUse = false
	q.gen++
	q.rules = raceRules{}
	q.att = [maxSends]loopAttempt{}
	l.free = append(l.free, s)
	l.active--
}

// accept starts one client query read from the listener socket.
func (l *Loop) accept(pkt []byte, from *sockaddr) {
	if t := l.f.Tap; t != nil {
		t.Message(dnstap.ClientQuery, pkt, from.addrPort(), false)
	}
	cacheable, miss, stale := false, false, (*cache.Entry)(nil)
	if l.f.Cache != nil {
		var done bool
		if done, cacheable, miss, stale = l.lookup(pkt, from); done {
			return // a hit: no handler_limit slot, no upstream
		}
	}
	snap := l.f.Begin()
	if snap == nil {
		return // shed: dropped, counted by Begin
	}
	p := l.f.classify(snap, pkt)
	if p.route == nil {
		l.f.End()
		if p.reply != nil {
			l.send(p.reply, from)
		}
		return
	}
	if miss {
		l.f.Cache.Add(cache.CountMiss)
	}
	var fl *flight
	if cacheable {
		var own bool
		if fl, own = l.join(pkt, from, stale, p); !own {
			l.f.End()
			return
		}
	}
	l.start(snap, pkt, from, p, fl)
}

// start races query pkt for the client at from (nil: a prefetch, no
// client) under snap, on a handler_limit slot the caller took; fl is its
// flight, if the query is cached.
func (l *Loop) start(snap *state.Snapshot, pkt []byte, from *sockaddr, p plan, fl *flight) {
	s := l.alloc()
	q := &l.slots[s]
	q.q = append(q.q[:0], pkt...)
	q.qEnd, q.clientID, q.kind = p.qEnd, msgID(pkt), p.kind
	if from != nil {
		q.client = *from
	} else {
		q.clientDone = true
	}
	q.fl = fl
	q.udpMax = snap.Config.Limits.UDPPayloadMax
	q.rules.reset(p.route.Upstreams)
	now := l.now()
	q.start, q.timeout, q.hedge = now, int64(snap.Config.UpstreamTimeout), int64(l.f.hedgeFor(p.route))
	if q.timeout <= q.hedge {
		l.expireQ.push(timerEntry{when: now + q.timeout, slot: s, gen: q.gen})
	} // else set by the first stall timer, for the few queries still in flight then
	if fl != nil && fl.stale != nil {
		l.staleQ.push(timerEntry{when: now + int64(l.f.Cache.Wait(time.Duration(q.hedge))), slot: s, gen: q.gen})
	}
	l.launch(s, 2, now)
}

// launch starts up to n more attempts. Attempts that fail at once (no
// socket, send refused) are settled after the batch, as if their failure
// had come back from the network, so "both failed fast: try the next two"
// means the same as in the goroutine race.
func (l *Loop) launch(s int32, n int, now int64) {
	q := &l.slots[s]
	var buf [maxAttempts]int
	failed := buf[:0] // upstreams whose attempt failed at once
	for n > 0 {
		for ; n > 0; n-- {
			i := q.rules.next(l.f)
			if i < 0 {
				n = 0
				break
			}
			if !l.sendAttempt(s, i, now) {
				failed = append(failed, i)
			}
		}
		for _, i := range failed {
			_, more := q.rules.settle(i, nil)
			n += more
		}
		failed = failed[:0]
	}
	l.finishIfExhausted(s)
}

// sendAttempt sends one upstream query of the query in slot s to ups[i],
// as a new attempt with a fresh ID on a socket of its own (a fresh source
// port), and sets its stall timer; false when it failed at once (scored).
func (l *Loop) sendAttempt(s int32, i int, now int64) bool {
	q := &l.slots[s]
	k := q.natt
	q.natt++
	a := &q.att[k]
	*a = loopAttempt{sock: -1, up: int8(i), id: l.f.newID()}
	a.score.Start(q.rules.ups[i])
	if err := l.sendUpstream(s, k, q, a); err != nil {
		a.score.Failed()
		a.rcode = failedFast
		l.hangUpAttempt(a, false)
		return false
	}
	a.sent = now
	l.stallQ.push(timerEntry{when: now + q.hedge, slot: s, gen: q.gen, attempt: int8(k)})
	return true
}

// again runs the rule of the hedge and retry timers (raceRules.again) for
// a query not yet answered: one more upstream or a retransmit, then the
// next retry timer while upstream_timeout leaves time for one.
func (l *Loop) again(s int32, now int64) {
	q := &l.slots[s]
	if i := q.rules.again(l.f, true); i >= 0 && !l.sendAttempt(s, i, now) {
		_, more := q.rules.settle(i, nil)
		l.launch(s, more, now)
		if !q.inUse || q.decided {
			return
		}
	}
	if gap, ok := q.rules.retryIn(time.Duration(q.hedge), time.Duration(q.start+q.timeout-now), true); ok {
		l.stallQ.push(timerEntry{when: now + int64(gap), slot: s, gen: q.gen, attempt: retryTimer})
	}
}

// sendUpstream sends the query to attempt k's upstream with the attempt's
// ID, from a socket connected for this upstream query alone.
func (l *Loop) sendUpstream(s int32, k int, q *loopQuery, a *loopAttempt) error {
	i, err := l.dial(a.score.Upstream().Addr, s, k)
	if err != nil {
		return err
	}
	a.sock = i
	setID(q.q, a.id)
	u := &l.up.socks[i]
	if errno := u.dst.sendto(u.fd, q.q); errno != 0 {
		return os.NewSyscallError("send", errno)
	}
	if t := l.f.Tap; t != nil {
		t.Message(dnstap.ForwarderQuery, q.q, a.score.Upstream().Addr, false)
	}
	return nil
}

// readUpstream reads what arrived on upstream socket i; events are its
// epoll events.
func (l *Loop) readUpstream(i int32, events uint32) {
	if i < 0 || int(i) >= len(l.up.socks) {
		return
	}
	u := &l.up.socks[i]
	if u.fd < 0 {
		return
	}
	if u.slot < 0 {
		l.drain(u.fd) // idle: what comes now is late for a query that has ended
		return
	}
	s, k := u.slot, int(u.k)
	q := &l.slots[s]
	if !q.inUse || q.gen != u.gen || q.att[k].sock != i {
		return // cannot happen: a settled attempt hands its socket back at once
	}
	if events&unix.EPOLLERR != 0 && l.refused(u, q.att[k].id) {
		l.attemptFailed(s, k)
		return
	}
	// One datagram per event: the epoll set is level-triggered, so more
	// waiting brings the loop back, and no read is spent learning EAGAIN.
	var from sockaddr
	n, errno := recvFrom(u.fd, l.buf, &from)
	switch errno {
	case 0:
		if from.equal(&u.dst) { // else not from the upstream asked (RFC 5452 §9.1): ignored
			l.upstreamReply(s, k, l.buf[:n])
		}
	case unix.EAGAIN, unix.EINTR:
	default: // an ICMP error is queued (ECONNREFUSED and the like): whose?
		if l.refused(u, q.att[k].id) {
			l.attemptFailed(s, k)
		}
	}
}

// refused reads the errors queued on u and reports whether one is about
// its current query: sent to u.dst and, when the ICMP message quoted enough
// of it, with the query's ID. An error for an earlier query of the socket
// (late) or about "fragmentation needed" (EMSGSIZE: the kernel lowers the
// path MTU itself) is no failure.
func (l *Loop) refused(u *upSock, id uint16) bool {
	failed := false
	for range 8 {
		var dst sockaddr
		n, ee, errno := recvErr(u.fd, l.buf, &dst)
		if errno != 0 {
			break
		}
		if ee != unix.EMSGSIZE && dst.equal(&u.dst) && (n < 2 || msgID(l.buf) == id) {
			failed = true
		}
	}
	return failed
}

func (q *loopQuery) outstanding() int {
	n := 0
	for k := range q.natt {
		if q.att[k].outstanding() {
			n++
		}
	}
	return n
}

// upstreamReply handles one datagram on attempt k's socket. What does not
// validate (a wrong ID or question, an empty or oversized packet) is
// ignored: the attempt keeps waiting.
func (l *Loop) upstreamReply(s int32, k int, msg []byte) {
	q := &l.slots[s]
	if !datagramFits(len(msg), q.udpMax) {
		return
	}
	a := &q.att[k]
	if validateReply(msg, a.id, q.q[headerLen:q.qEnd]) != nil {
		return
	}
	if t := l.f.Tap; t != nil {
		t.Message(dnstap.ForwarderResponse, msg, a.score.Upstream().Addr, false)
	}
	now := l.now()
	good := isGoodRcode(rcode(msg))
	a.score.Replied(good, time.Duration(now-a.sent))
	a.rcode = uint8(rcode(msg)) + 1
	if q.decided {
		l.hangUpAttempt(a, true)
		l.freeIfQuiet(s)
		return
	}
	if !good {
		msg = append([]byte(nil), msg...) // a fallback outlives the scratch buffer
	}
	win, more := q.rules.settle(int(a.up), msg)
	if win != nil {
		q.rules.won(l.f, a.score.Upstream(), time.Duration(now-q.start))
		// The client first: giving the socket back is a system call that
		// need not delay the reply.
		setID(win, q.clientID)
		got := l.cacheNow()
		l.answer(s, win, OutcomeUpstream)
		l.settleFlight(s, win, true, got)
		l.hangUpAttempt(a, true) // true: nothing to read, the reply was read
		l.freeOrGrace(s, now)
		return
	}
	l.hangUpAttempt(a, true)
	l.launch(s, more, now)
}

// attemptFailed settles an attempt that failed fast (an ICMP error).
func (l *Loop) attemptFailed(s int32, k int) {
	q := &l.slots[s]
	a := &q.att[k]
	a.score.Failed()
	a.rcode = failedFast
	l.hangUpAttempt(a, false)
	if q.decided {
		l.freeIfQuiet(s)
		return
	}
	_, more := q.rules.settle(int(a.up), nil)
	l.launch(s, more, l.now())
}

// finishIfExhausted answers the client when nothing is out and nothing
// more can be started: the best error reply, or SERVFAIL.
func (l *Loop) finishIfExhausted(s int32) {
	q := &l.slots[s]
	if q.decided || q.rules.pending > 0 {
		return
	}
	l.finish(s)
}

func (l *Loop) finish(s int32) {
	q := &l.slots[s]
	setID(q.q, q.clientID)
	reply, outcome := q.rules.final(q.q, q.qEnd)
	if l.f.debug {
		l.f.logUnanswered(q.q, outcome, q.attemptNotes())
	}
	l.staleFallback(s) // a failed refresh: the stale answer, when allowed
	l.answer(s, reply, outcome)
	l.settleFlight(s, reply, false, l.cacheNow())
	l.freeOrGrace(s, l.now())
}

// answer sends the client its reply, unless it has one already (a stale
// answer) or there is none (a prefetch), and ends the race.
func (l *Loop) answer(s int32, reply []byte, outcome Outcome) {
	q := &l.slots[s]
	if !q.clientDone {
		l.send(reply, &q.client)
		l.f.Stats.count(q.kind, outcome)
	}
	l.f.End()
	q.decided = true
}

// freeOrGrace ends an answered query, or keeps it while its losers are
// still out: they are read, for health, until LoserGrace or
// upstream_timeout, whichever comes first.
func (l *Loop) freeOrGrace(s int32, now int64) {
	q := &l.slots[s]
	if q.outstanding() == 0 {
		l.freeQuery(s)
		return
	}
	l.graceQ.push(timerEntry{when: now + int64(l.f.LoserGrace), slot: s, gen: q.gen})
}

func (l *Loop) freeIfQuiet(s int32) {
	if l.slots[s].outstanding() == 0 {
		l.freeQuery(s)
	}
}
