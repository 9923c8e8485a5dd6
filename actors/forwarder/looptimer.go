package forwarder

import "time"

// The loop's timers (the three queues are Loop's stallQ, expireQ and
// graceQ): when the next one is due, which can be dropped unfired, and what
// each does when it fires. Timers are never cancelled: a query that ends
// leaves its timers behind, and dropIdleTimers skips them before they can
// wake the loop.

// nextTimer is when the earliest timer is due; zero when none is set. It
// first drops the timers that would do nothing (dropIdleTimers), so that
// only a timer with work to do can wake the loop.
func (l *Loop) nextTimer() time.Time {
	l.dropIdleTimers()
	next, ok := int64(0), false
	if e, set := l.stallQ.first(); set {
		next, ok = e.when, true
	}
	if e, set := l.staleQ.first(); set && (!ok || e.when < next) {
		next, ok = e.when, true
	}
	for _, q := range [...]*timerQueue{&l.expireQ, &l.graceQ} {
		if e, set := q.first(); set && (!ok || e.when < next) {
			next, ok = e.when, true
		}
	}
	if w := l.up.trimAt; w != 0 && (!ok || w < next) {
		next, ok = w, true
	}
	if !ok {
		return time.Time{}
	}
	return l.epoch.Add(time.Duration(next))
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

// retryTimer is the attempt of a retry timer's entry in the stall heap
// (their delays vary too): at it the query retransmits, unless answered.
const retryTimer int8 = -1

// stallHasWork says whether stall timer e would do anything when it fires
// (see fireTimers): count a stall, be its query's first stall timer, or
// retry a query not yet answered.
func (l *Loop) stallHasWork(e timerEntry) bool {
	if !l.queryLive(e) {
		return false
	}
	q := &l.slots[e.slot]
	if e.attempt == retryTimer {
		return !q.decided
	}
	return !q.hedged || q.att[e.attempt].score.Pending()
}

// fireTimers runs every timer due at now.
func (l *Loop) fireTimers(now int64) {
	for e, ok := l.stallQ.pop(now); ok; e, ok = l.stallQ.pop(now) {
		if !l.stallHasWork(e) {
			continue
		}
		q := &l.slots[e.slot]
		if e.attempt == retryTimer {
			l.again(e.slot, now)
			continue
		}
		q.att[e.attempt].score.Stall()
		// The first stall timer of a query comes at its start + hedge delay.
		// Most queries are over by then: only now does a query get its
		// expiry timer, which keeps the expiry queue at the queries still
		// in flight after the hedge delay rather than all of upstream_timeout's.
		// And if nothing has won yet, start one more upstream (or, when
		// none is left, retransmit) and set the first retry timer.
		if !q.hedged {
			q.hedged = true
			if q.timeout > q.hedge {
				l.expireQ.push(timerEntry{when: q.start + q.timeout, slot: e.slot, gen: q.gen})
			}
			if !q.decided {
				l.again(e.slot, now)
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
		// upstream_timeout: whatever is still out has timed out.
		for k := range q.natt {
			q.att[k].score.TimedOut()
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

// timerEntry is one timer: a query slot, the slot's generation when the
// timer was set (a reused slot ignores its predecessor's timers), and for
// stall timers the attempt.
type timerEntry struct {
	when    int64
	slot    int32
	gen     uint32
	attempt int8
}

// timerHeap is a min-heap of timers by when.
type timerHeap struct{ h []timerEntry }

func (t *timerHeap) push(e timerEntry) {
	t.h = append(t.h, e)
	for i := len(t.h) - 1; i > 0; {
		p := (i - 1) / 2
		if t.h[p].when <= t.h[i].when {
			break
		}
		t.h[p], t.h[i] = t.h[i], t.h[p]
		i = p
	}
}

// first is the earliest entry, due or not.
func (t *timerHeap) first() (timerEntry, bool) {
	if len(t.h) == 0 {
		return timerEntry{}, false
	}
	return t.h[0], true
}

// pop returns the earliest entry if it is due at now.
func (t *timerHeap) pop(now int64) (timerEntry, bool) {
	if len(t.h) == 0 || t.h[0].when > now {
		return timerEntry{}, false
	}
	e := t.h[0]
	n := len(t.h) - 1
	t.h[0] = t.h[n]
	t.h = t.h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && t.h[c+1].when < t.h[c].when {
			c++
		}
		if t.h[i].when <= t.h[c].when {
			break
		}
		t.h[i], t.h[c] = t.h[c], t.h[i]
		i = c
	}
	return e, true
}

type timerQueue struct {
	q    []timerEntry
	head int
}

func (t *timerQueue) push(e timerEntry) { t.q = append(t.q, e) }

// first is the first entry, due or not.
func (t *timerQueue) first() (timerEntry, bool) {
	if t.head == len(t.q) {
		return timerEntry{}, false
	}
	return t.q[t.head], true
}

// pop returns the first entry due at now.
func (t *timerQueue) pop(now int64) (timerEntry, bool) {
	if t.head == len(t.q) || t.q[t.head].when > now {
		return timerEntry{}, false
	}
	e := t.q[t.head]
	t.head++
	if t.head == len(t.q) { // empty: reuse the array from the start
		t.q, t.head = t.q[:0], 0
	} else if t.head > 1024 && t.head > len(t.q)/2 {
		n := copy(t.q, t.q[t.head:])
		t.q, t.head = t.q[:n], 0
	}
	return e, true
}
