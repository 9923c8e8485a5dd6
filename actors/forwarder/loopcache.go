package forwarder

import (
	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
)

// The cache on the UDP event loop. A hit is answered here, on the loop that
// read the query, from the loop's own scratch buffers: no upstream query,
// no goroutine, no allocation. A miss or a refresh becomes a flight
// (flight.go) that identical queries on any loop wait on; a refresh's wait
// is a timer in the loop's staleQ.

// lookup answers pkt from the cache when it can (done). Otherwise it says
// whether the query may be cached (its key is in l.key) and which expired
// entry, if any, a refresh would fall back on; miss: the cache had no
// fresh answer for a query it could have had one for.
func (l *Loop) lookup(pkt []byte, from *sockaddr) (done, cacheable, miss bool, stale *cache.Entry) {
	c := l.f.Cache
	cq, ok := c.ParseQuery(pkt, false, &l.kbuf)
	if !ok {
		return false, false, false, nil
	}
	l.key = cq
	now := c.Now()
	e, st := c.Lookup(&cq, now)
	switch st {
	case cache.Fresh, cache.Prefetch:
		l.f.Stats.count(RouteKind(e.Kind()), OutcomeCache)
		l.sendEntry(e, pkt, &cq, from, now, false)
		if st == cache.Prefetch {
			l.prefetch(pkt, e)
		}
		return true, false, false, nil
	case cache.StaleNow:
		l.sendStale(e, pkt, &cq, from, now)
		return true, false, false, nil
	case cache.Expired:
		return false, true, true, e
	case cache.TooLarge:
		return false, false, true, nil // the client cannot take it: go upstream, cache nothing
	}
	return false, true, true, nil
}

func (l *Loop) sendEntry(e *cache.Entry, pkt []byte, cq *cache.Query, to *sockaddr, now int64, stale bool) {
	if n := l.f.Cache.Render(l.out, e, pkt, cq, now, stale); n > 0 {
		l.sendAs(dnstap.CachedResponse, l.out[:n], to)
	}
}

func (l *Loop) sendStale(e *cache.Entry, pkt []byte, cq *cache.Query, to *sockaddr, now int64) {
	l.f.Stats.count(RouteKind(e.Kind()), OutcomeStale)
	l.f.Cache.Add(cache.CountStale)
	l.sendEntry(e, pkt, cq, to, now, true)
}

// join registers the query's race in the flight table, or makes the query
// wait on the race in flight for its key. own says the caller starts the
// race; otherwise the query is taken care of (waiting, answered stale, or
// dropped when too many wait already).
func (l *Loop) join(pkt []byte, from *sockaddr, stale *cache.Entry, p plan) (fl *flight, own bool) {
	c := l.f.Cache
	now := c.Now()
	w := newWaiter(pkt, l.key.NameEnd)
	w.client, w.path = *from, l.reply
	fl, js := l.f.flights.start(&l.key, stale, p.kind, &w)
	switch js {
	case flightOwner:
		return fl, true
	case flightWaiting:
		c.Add(cache.CountCoalesced)
	case flightStale:
		l.sendStale(fl.stale, pkt, &l.key, from, now)
	case flightFull:
		l.f.Stats.Shed.Add(1)
	}
	return nil, false
}

// prefetch starts the background refresh of e, hit in the last 10 % of its
// lifetime: a query of the loop's own with no client, unless a race for the
// key is in flight already.
func (l *Loop) prefetch(pkt []byte, e *cache.Entry) {
	snap := l.f.Begin()
	if snap == nil {
		return
	}
	p := l.f.classify(snap, pkt)
	if p.route == nil {
		l.f.End()
		return
	}
	c := l.f.Cache
	fl, js := l.f.flights.start(&l.key, e, p.kind, nil)
	if js != flightOwner {
		l.f.End()
		return
	}
	c.Add(cache.CountPrefetch)
	l.start(snap, pkt, nil, p, fl)
}

// settleFlight ends query s's flight with its race's reply (see
// Forwarder.settleFlight).
func (l *Loop) settleFlight(s int32, reply []byte, good bool, now int64) {
	q := &l.slots[s]
	if q.fl == nil {
		return
	}
	fl := q.fl
	q.fl = nil
	l.f.settleFlight(fl, reply, good, now, l.out)
}

// staleFallback gives query s's client the stale answer, if its flight
// refreshes an entry that may still be served stale; it says whether it did.
func (l *Loop) staleFallback(s int32) bool {
	q := &l.slots[s]
	if q.clientDone || q.fl == nil || q.fl.stale == nil {
		return false
	}
	c := l.f.Cache
	now := c.Now()
	if !c.StaleOK(q.fl.stale, now) {
		return false
	}
	l.sendStale(q.fl.stale, q.q, &q.fl.q, &q.client, now)
	q.clientDone = true
	return true
}

// staleTimer fires at the end of a refresh's wait: the query's client and
// every query waiting on it get the stale answer; the race goes on, to
// refresh the entry.
func (l *Loop) staleTimer(s int32) {
	q := &l.slots[s]
	q.staleFired = true
	if q.fl == nil {
		return
	}
	setID(q.q, q.clientID)
	l.staleFallback(s)
	if ws := l.f.flights.takeWaiters(q.fl); len(ws) > 0 && q.fl.stale != nil {
		c := l.f.Cache
		if now := c.Now(); c.StaleOK(q.fl.stale, now) {
			l.f.deliver(ws, q.fl, q.fl.stale, nil, true, now, l.out)
		}
	}
}

// cacheNow is the cache's clock, 0 without a cache (nothing to store then).
func (l *Loop) cacheNow() int64 {
	if l.f.Cache == nil {
		return 0
	}
	return l.f.Cache.Now()
}
