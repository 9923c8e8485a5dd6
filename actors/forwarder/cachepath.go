package forwarder

import (
	"time"

	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/actors/state"
)

// The cache on the goroutine path (TCP listeners, the HTTP API): the same
// rules as the UDP loop (loopcache.go), with goroutines and timers where the
// loop has timer queues.

// replyBufLen fits any DNS message plus the EDE option of a stale answer.
const replyBufLen = 65535 + cache.EDELen

// answerCached is Answer with the cache on.
func (f *Forwarder) answerCached(snap *state.Snapshot, q []byte, tcp bool) (reply []byte, cached bool) {
	c := f.Cache
	var kbuf cache.KeyBuf
	cq, parsed := c.ParseQuery(q, tcp, &kbuf)
	cacheable := parsed
	var stale *cache.Entry
	if cacheable {
		now := c.Now()
		e, st := c.Lookup(&cq, now)
		switch st {
		case cache.Fresh, cache.Prefetch:
			f.Stats.count(RouteKind(e.Kind()), OutcomeCache)
			out := f.render(e, q, &cq, now, false)
			if st == cache.Prefetch {
				f.prefetch(q, tcp, &cq, e)
			}
			return out, true
		case cache.StaleNow:
			return f.staleReply(e, q, &cq, now), true
		case cache.Expired:
			stale = e
		case cache.TooLarge:
			cacheable = false // the client cannot take it: go upstream, cache nothing
		}
	}
	p := f.classify(snap, q)
	if p.route == nil {
		return p.reply, false
	}
	if parsed {
		c.Add(cache.CountMiss)
	}
	if !cacheable {
		reply, outcome := f.race(snap, p.route, q, p.qEnd, tcp)
		f.Stats.count(p.kind, outcome)
		return reply, false
	}
	now := c.Now()
	wait := c.Wait(f.hedgeFor(p.route))
	w := newWaiter(q, cq.NameEnd)
	w.ch = make(chan []byte, 1)
	fl, js := f.flights.start(&cq, stale, p.kind, &w)
	switch js {
	case flightWaiting:
		c.Add(cache.CountCoalesced)
		return f.await(w.ch, snap, q, p), false
	case flightStale:
		return f.staleReply(fl.stale, q, &cq, now), true
	case flightFull:
		reply, outcome := f.race(snap, p.route, q, p.qEnd, tcp)
		f.Stats.count(p.kind, outcome)
		return reply, false
	}
	if stale == nil { // a miss: race here, as without the cache
		reply, outcome := f.race(snap, p.route, q, p.qEnd, tcp)
		f.Stats.count(p.kind, outcome)
		f.settleFlight(fl, reply, outcome == OutcomeUpstream, c.Now(), nil)
		return reply, false
	}
	// A refresh: the race goes on after the wait, to refresh the entry for
	// everyone, while this client gets the stale answer. It outlives this
	// call, so it takes a handler_limit slot of its own (as the loop's
	// race keeps its slot); none left: the refresh fails at once.
	if f.Begin() == nil {
		f.settleFlight(fl, errorReply(q, p.qEnd, rcodeServFail), false, c.Now(), nil)
		return f.staleReply(stale, q, &cq, c.Now()), true
	}
	qc := append([]byte(nil), q...)
	done := make(chan raceResult, 1)
	timer := f.staleAt(fl, wait)
	go func() {
		defer f.End()
		reply, outcome := f.race(snap, p.route, qc, p.qEnd, tcp)
		timer.Stop()
		// Stored before the client hears: its next query finds the entry.
		f.settleFlight(fl, reply, outcome == OutcomeUpstream, c.Now(), nil)
		done <- raceResult{reply, outcome}
	}()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	select {
	case r := <-done:
		if r.outcome != OutcomeUpstream && c.StaleOK(stale, c.Now()) {
			return f.staleReply(stale, q, &cq, c.Now()), true
		}
		f.Stats.count(p.kind, r.outcome)
		return r.reply, false
	case <-deadline.C:
		return f.staleReply(stale, q, &cq, c.Now()), true
	}
}

type raceResult struct {
	reply   []byte
	outcome Outcome
}

// staleAt answers fl's waiters with the stale answer once wait has passed
// (later arrivals get it at once, flightTable.start). The timer is stopped
// when the flight settles.
func (f *Forwarder) staleAt(fl *flight, wait time.Duration) *time.Timer {
	return time.AfterFunc(wait, func() {
		if ws := f.flights.takeWaiters(fl); len(ws) > 0 && f.Cache.StaleOK(fl.stale, f.Cache.Now()) {
			f.deliver(ws, fl, fl.stale, nil, true, f.Cache.Now(), make([]byte, replyBufLen))
		}
	})
}

// await waits for the race a query joined. The owner always answers its
// waiters (at the end of the race, or with the stale answer at the wait's
// end), so the timeout is only a safety net.
func (f *Forwarder) await(ch <-chan []byte, snap *state.Snapshot, q []byte, p plan) []byte {
	t := time.NewTimer(snap.Config.UpstreamTimeout + 2*time.Second)
	defer t.Stop()
	select {
	case r := <-ch:
		return r
	case <-t.C:
		f.Stats.count(p.kind, OutcomeServFail)
		return errorReply(q, p.qEnd, rcodeServFail)
	}
}

// prefetch starts the background refresh of entry e, hit in the last 10 %
// of its lifetime, unless a race for it is in flight already.
func (f *Forwarder) prefetch(q []byte, tcp bool, cq *cache.Query, e *cache.Entry) {
	snap := f.Begin()
	if snap == nil {
		return
	}
	p := f.classify(snap, q)
	if p.route == nil {
		f.End()
		return
	}
	c := f.Cache
	wait := c.Wait(f.hedgeFor(p.route))
	fl, js := f.flights.start(cq, e, p.kind, nil)
	if js != flightOwner {
		f.End()
		return
	}
	c.Add(cache.CountPrefetch)
	qc := append([]byte(nil), q...)
	timer := f.staleAt(fl, wait)
	go func() {
		defer f.End()
		reply, outcome := f.race(snap, p.route, qc, p.qEnd, tcp)
		timer.Stop()
		f.settleFlight(fl, reply, outcome == OutcomeUpstream, c.Now(), nil)
	}()
}

// settleFlight ends fl with the race's reply: a good one is cached (if the
// rules allow) and answers the waiters; after a failed refresh the stale
// entry answers them and stale_recheck starts; otherwise they get the
// reply. now is when the reply came (the entry's age counts from it); buf
// is the caller's scratch (nil: one is made if needed).
func (f *Forwarder) settleFlight(fl *flight, reply []byte, good bool, now int64, buf []byte) {
	c := f.Cache
	var e *cache.Entry
	stale := false
	switch {
	case good:
		e = c.Store(reply, &fl.q, now, int(fl.kind))
	case fl.stale != nil && c.StaleOK(fl.stale, now):
		c.RefreshFailed(fl.stale, now)
		e, stale = fl.stale, true
	default:
		e = c.Store(reply, &fl.q, now, int(fl.kind)) // an error reply: not cached, but it answers the waiters
	}
	ws := f.flights.finish(fl)
	if len(ws) == 0 {
		return
	}
	if buf == nil {
		buf = make([]byte, replyBufLen)
	}
	f.deliver(ws, fl, e, reply, stale, now, buf)
}

// staleReply is the stale answer for q from e (goroutine path).
func (f *Forwarder) staleReply(e *cache.Entry, q []byte, cq *cache.Query, now int64) []byte {
	f.Stats.count(RouteKind(e.Kind()), OutcomeStale)
	f.Cache.Add(cache.CountStale)
	return f.render(e, q, cq, now, true)
}

// render is e's answer for q in a new buffer.
func (f *Forwarder) render(e *cache.Entry, q []byte, cq *cache.Query, now int64, stale bool) []byte {
	out := make([]byte, e.Size()+cache.EDELen)
	return out[:f.Cache.Render(out, e, q, cq, now, stale)]
}
