package forwarder

import (
	"sync"

	"github.com/spartan-dns/spartan/actors/forwarder/cache"
)

// Request coalescing (SPEC "Cache"): while a race for a cache key is in
// flight, identical queries wait for it instead of racing again, whichever
// loop or goroutine they arrived on (SO_REUSEPORT spreads one client's
// queries over every loop of a listener). The race's owner answers them
// when it ends, each with its own ID and question-name case: UDP waiters
// through their listener's reply path (any socket bound to the address
// will do, so no loop needs waking), goroutine waiters on a channel.

// maxWaiters bounds the queries waiting on one race. Waiters hold no
// handler_limit slot (the race holds one), so this bound with handler_limit
// bounds their memory; a UDP query beyond it is dropped and counted as shed
// (its client retries), a TCP one races on its own.
const maxWaiters = 256

// flightShards spreads the table's lock: loops that start or join races of
// different keys rarely meet.
const flightShards = 64

// flight is one race in flight for a cache key.
type flight struct {
	key   string
	q     cache.Query  // Key is key's bytes: what the reply is stored under
	stale *cache.Entry // the expired entry being refreshed; nil on a miss
	kind  RouteKind

	// Guarded by the shard's mutex.
	waiters []waiter
	// waitOver: the refresh's wait has run out (its owner's timer): its
	// waiters got the stale answer, later arrivals get it at once.
	waitOver bool
	done     bool
}

// waiter is one query waiting for a flight.
type waiter struct {
	query  []byte     // the client's header and question name: its ID and letter case
	client sockaddr   // UDP: where the answer goes
	path   *ReplyPath // UDP: through which socket; nil for a goroutine waiter
	ch     chan []byte
}

type flightTable struct {
	shards [flightShards]struct {
		mu sync.Mutex
		m  map[string]*flight
		_  [40]byte
	}
}

func newFlightTable() *flightTable {
	t := &flightTable{}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*flight)
	}
	return t
}

func (t *flightTable) shard(q *cache.Query) int { return int(q.Hash % flightShards) }

// joinState is what start did.
type joinState uint8

const (
	flightOwner   joinState = iota // no race was in flight: the caller owns the new one
	flightWaiting                  // the caller's query waits on the race in flight
	flightFull                     // a race is in flight, with no room for one more waiter
	flightStale                    // a refresh is in flight past its wait: answer stale at once
	flightBusy                     // a race is in flight and w was nil (a prefetch): nothing to do
)

// start registers a race for q, unless one is in flight: then w (nil: do
// not wait) joins it. stale and kind describe the new race.
func (t *flightTable) start(q *cache.Query, stale *cache.Entry, kind RouteKind, w *waiter) (*flight, joinState) {
	sh := &t.shards[t.shard(q)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if fl := sh.m[string(q.Key)]; fl != nil {
		switch {
		case w == nil:
			return fl, flightBusy
		case fl.stale != nil && fl.waitOver:
			return fl, flightStale
		case len(fl.waiters) >= maxWaiters:
			return fl, flightFull
		}
		fl.waiters = append(fl.waiters, *w)
		return fl, flightWaiting
	}
	fl := &flight{key: string(q.Key), stale: stale, kind: kind}
	fl.q = *q
	fl.q.Key = []byte(fl.key)
	sh.m[fl.key] = fl
	return fl, flightOwner
}

// finish takes fl out of the table (later queries find the cache, or start
// a race of their own) and returns its waiters, for the owner to answer.
func (t *flightTable) finish(fl *flight) []waiter {
	sh := &t.shards[t.shard(&fl.q)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[fl.key] == fl {
		delete(sh.m, fl.key)
	}
	fl.done = true
	ws := fl.waiters
	fl.waiters = nil
	return ws
}

// takeWaiters returns fl's waiters so far, leaving it in the table: the
// wait is over, they get the stale answer, and so will later arrivals.
func (t *flightTable) takeWaiters(fl *flight) []waiter {
	sh := &t.shards[t.shard(&fl.q)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws := fl.waiters
	fl.waiters = nil
	fl.waitOver = true
	return ws
}

// newWaiter copies what answering q later needs.
func newWaiter(q []byte, nameEnd int) waiter {
	return waiter{query: append([]byte(nil), q[:nameEnd]...)}
}

// deliver answers the waiters of fl from e (the new entry, or the stale
// one) or, when the reply did not parse into an entry, from the reply
// itself, and counts them. buf is the caller's scratch.
func (f *Forwarder) deliver(ws []waiter, fl *flight, e *cache.Entry, reply []byte, stale bool, now int64, buf []byte) {
	c := f.Cache
	outcome := OutcomeStale
	if !stale {
		outcome = OutcomeUpstreamError
		if len(reply) >= headerLen && isGoodRcode(rcode(reply)) {
			outcome = OutcomeUpstream
		}
	}
	for i := range ws {
		w := &ws[i]
		var out []byte
		if e != nil {
			out = buf[:c.Render(buf, e, w.query, &fl.q, now, stale)]
		} else {
			out = buf[:copy(buf, reply)]
			if len(out) >= len(w.query) {
				copy(out, w.query[:2])
				copy(out[headerLen:], w.query[headerLen:])
			}
		}
		if len(out) == 0 {
			continue
		}
		f.Stats.count(fl.kind, outcome)
		if stale {
			c.Add(cache.CountStale)
		}
		if w.path != nil {
			w.path.send(out, &w.client)
			continue
		}
		select {
		case w.ch <- append([]byte(nil), out...):
		default: // cannot happen: one answer per waiter, and room for it
		}
	}
}

// count returns the number of races in flight for cache keys.
func (t *flightTable) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Refreshing returns the number of races in flight for cache keys (misses,
// refreshes and prefetches): tests wait for it to drop to zero.
func (f *Forwarder) Refreshing() int { return f.flights.count() }
