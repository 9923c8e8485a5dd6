package forwarder

import (
	"os"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
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
	att   [maxAttempts]loopAttempt
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
// (upsock.go): connected, so the kernel drops packets from any other source
// and reports an ICMP error (the upstream refusing) as a failed read.
type loopAttempt struct {
	u     *config.Upstream
	sock  int32 // index in the loop's socket pool; -1 once settled
	id    uint16
	state attemptState
	sent  int64 // loop clock
}

type attemptState uint8

const (
	attemptPending attemptState = iota // sent, no reply yet
	attemptStalled                     // no reply by its send time + the hedge delay: a stall was counted
	attemptDone                        // replied or failed
)

func (a *loopAttempt) outstanding() bool { return a.state != attemptDone }

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
	var s int32
	if n := len(l.free); n > 0 {
		s = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		l.slots = append(l.slots, loopQuery{})
		s = int32(len(l.slots) - 1)
	}
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
	q.att = [maxAttempts]loopAttempt{}
	l.free = append(l.free, s)
	l.active--
}

// accept starts one client query read from the listener socket.
func (l *Loop) accept(pkt []byte, from *sockaddr) {
	cacheable, miss, stale := false, false, (*cache.Entry)(nil)
	if l.f.Cache != nil {
		var done bool
		if done, cacheable, miss, stale = l.lookup(pkt, from); done {
			return // a hit: no handler_limit slot, no upstream
		}
	}
	if !l.f.Begin() {
		return // shed: dropped, counted by Begin
	}
	p := l.f.classify(pkt)
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
	l.start(pkt, from, p, fl)
}

// start races query pkt for the client at from (nil: a prefetch, no
// client), on a handler_limit slot the caller took; fl is its flight, if
// the query is cached.
func (l *Loop) start(pkt []byte, from *sockaddr, p plan, fl *flight) {
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
	q.udpMax = p.snap.Config.Limits.UDPPayloadMax
	q.rules.reset(p.route.Upstreams)
	now := l.now()
	q.start, q.timeout, q.hedge = now, int64(p.snap.Config.UpstreamTimeout), int64(l.f.hedgeFor(p.route))
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
	for n > 0 {
		failed := 0
		for ; n > 0; n-- {
			i := q.rules.next(l.f)
			if i < 0 {
				n = 0
				break
			}
			k := q.natt
			q.natt++
			a := &q.att[k]
			u := q.rules.ups[i]
			*a = loopAttempt{u: u, sock: -1, id: uint16(l.f.Rand(1 << 16))}
			if err := l.sendUpstream(s, k, q, a); err != nil {
				a.state = attemptDone
				l.hangUpAttempt(a, false)
				u.Failures.Add(1)
				failed++
				continue
			}
			a.sent = now
			l.stallQ.push(timerEntry{when: now + q.hedge, slot: s, gen: q.gen, attempt: int8(k)})
		}
		for ; failed > 0; failed-- {
			_, more := q.rules.settle(nil)
			n += more
		}
	}
	l.finishIfExhausted(s)
}

// sendUpstream sends the query to attempt k's upstream with the attempt's
// ID, from a socket connected for this upstream query alone.
func (l *Loop) sendUpstream(s int32, k int, q *loopQuery, a *loopAttempt) error {
	i, err := l.dial(a.u.Addr, s, k)
	if err != nil {
		return err
	}
	a.sock = i
	setID(q.q, a.id)
	if errno := rawSend(l.up.socks[i].fd, q.q); errno != 0 {
		return os.NewSyscallError("send", errno)
	}
	return nil
}

// readUpstream reads what arrived on upstream socket i.
func (l *Loop) readUpstream(i int32) {
	if i < 0 || int(i) >= len(l.up.socks) {
		return
	}
	u := &l.up.socks[i]
	if u.fd < 0 {
		return
	}
	if u.slot < 0 {
		l.hangUp(i, false) // idle, yet readable: read it empty again (never expected)
		return
	}
	s, k := u.slot, int(u.k)
	q := &l.slots[s]
	if !q.inUse || q.gen != u.gen || q.att[k].sock != i {
		return // cannot happen: a settled attempt hands its socket back at once
	}
	// One datagram per event: the epoll set is level-triggered, so more
	// waiting brings the loop back, and no read is spent learning EAGAIN.
	n, errno := rawRecv(u.fd, l.buf)
	switch errno {
	case 0:
		l.upstreamReply(s, k, l.buf[:n])
	case unix.EAGAIN, unix.EINTR:
	default: // ECONNREFUSED (ICMP port unreachable) and the like
		l.attemptFailed(s, k)
	}
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
	if len(msg) == 0 || len(msg) > q.udpMax {
		return
	}
	a := &q.att[k]
	if validateReply(msg, a.id, q.q[headerLen:q.qEnd]) != nil {
		return
	}
	if a.state == attemptStalled {
		a.u.LateReplies.Add(1) // it answered after all: take the stall back
	}
	a.state = attemptDone
	now := l.now()
	good := isGoodRcode(rcode(msg))
	if good {
		a.u.Successes.Add(1)
		a.u.Latency.Observe(time.Duration(now - a.sent))
	} else {
		a.u.Failures.Add(1)
	}
	if q.decided {
		l.hangUpAttempt(a, true)
		l.freeIfQuiet(s)
		return
	}
	if !good {
		msg = append([]byte(nil), msg...) // a fallback outlives the scratch buffer
	}
	win, more := q.rules.settle(msg)
	if win != nil {
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
	a.state = attemptDone
	l.hangUpAttempt(a, false)
	a.u.Failures.Add(1)
	if q.decided {
		l.freeIfQuiet(s)
		return
	}
	_, more := q.rules.settle(nil)
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

// dropIdleTimers removes, from the front of each timer queue, the timers
// that would do nothing if they fired: those of queries that have ended,
// and the stall timers of attempts that have settled once their query has
// hedged. Most queries end within a millisecond, long before their timers
// are due (a stall timer at the hedge delay, a grace timer a second after
// the answer); without this each such timer would still wake the loop, for
// nothing, two or three times per query.
func (l *Loop) dropIdleTimers() {
	for e, ok := l.stallQ.first(); ok && !l.stallHasWork(e); e, ok = l.stallQ.first() {
		l.stallQ.pop(e.when)
	}
	for _, t := range [...]*timerQueue{&l.expireQ, &l.graceQ} {
		for e, ok := t.first(); ok && !l.queryLive(e); e, ok = t.first() {
			t.pop(e.when)
		}
	}
	for e, ok := l.staleQ.first(); ok && !l.staleHasWork(e); e, ok = l.staleQ.first() {
		l.staleQ.pop(e.when)
	}
}

// staleHasWork says whether the refresh wait e ends for a race still on.
func (l *Loop) staleHasWork(e timerEntry) bool {
	if !l.queryLive(e) {
		return false
	}
	q := &l.slots[e.slot]
	return !q.decided && !q.staleFired && q.fl != nil
}

// queryLive says whether the query timer e was set for is still in flight.
func (l *Loop) queryLive(e timerEntry) bool {
	q := &l.slots[e.slot]
	return q.inUse && q.gen == e.gen
}

// stallHasWork says whether stall timer e would do anything when it fires
// (see fireTimers): count a stall, or be its query's first stall timer.
func (l *Loop) stallHasWork(e timerEntry) bool {
	if !l.queryLive(e) {
		return false
	}
	q := &l.slots[e.slot]
	return !q.hedged || q.att[e.attempt].state == attemptPending
}

// fireTimers runs every timer due at now.
func (l *Loop) fireTimers(now int64) {
	for e, ok := l.stallQ.pop(now); ok; e, ok = l.stallQ.pop(now) {
		if !l.stallHasWork(e) {
			continue
		}
		q := &l.slots[e.slot]
		if a := &q.att[e.attempt]; a.state == attemptPending {
			a.state = attemptStalled
			a.u.Stalls.Add(1)
		}
		// The first stall timer of a query comes at its start + hedge delay.
		// Most queries are over by then: only now does a query get its
		// expiry timer, which keeps the expiry queue at the queries still
		// in flight after the hedge delay rather than all of upstream_timeout's.
		// And if nothing has won yet, start one more upstream.
		if !q.hedged {
			q.hedged = true
			if q.timeout > q.hedge {
				l.expireQ.push(timerEntry{when: q.start + q.timeout, slot: e.slot, gen: q.gen})
			}
			if !q.decided {
				l.launch(e.slot, 1, now)
			}
		}
	}
	for e, ok := l.staleQ.pop(now); ok; e, ok = l.staleQ.pop(now) {
		if l.staleHasWork(e) {
			l.staleTimer(e.slot)
		}
	}
	for e, ok := l.expireQ.pop(now); ok; e, ok = l.expireQ.pop(now) {
		if !l.queryLive(e) {
			continue
		}
		q := &l.slots[e.slot]
		// upstream_timeout: whatever is still out has failed, unless it
		// already counted a stall, which stands.
		for k := range q.natt {
			if q.att[k].state == attemptPending {
				q.att[k].u.Failures.Add(1)
			}
		}
		if !q.decided {
			l.finish(e.slot)
		}
		if q.inUse && q.gen == e.gen {
			l.freeQuery(e.slot)
		}
	}
	for e, ok := l.graceQ.pop(now); ok; e, ok = l.graceQ.pop(now) {
		if l.queryLive(e) {
			l.freeQuery(e.slot) // losers we stopped waiting for: their stalls stand
		}
	}
	l.trim(now)
}
