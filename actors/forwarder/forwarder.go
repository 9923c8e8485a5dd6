// Package forwarder is Spartan's query path: it routes one query, answers
// local zones, and races the chosen upstreams. It has two engines with the
// same rules (rules.go): Loop, the UDP listeners' event loop, and Handle, a
// goroutine per query (TCP listeners, the HTTP API).
package forwarder

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
)

// Forwarder answers queries. It holds no mutable configuration: every query
// loads the current snapshot from the store once.
type Forwarder struct {
	store *config.Store
	log   zerolog.Logger
	Stats *Stats

	// Hedge is the longest the race waits for a first reply before it
	// starts one more upstream (when the route has one left), and after
	// which a silent upstream counts a stall. Silent upstreams are the
	// failure Spartan exists for: without a hedge, a query whose two chosen
	// upstreams both went silent would wait for upstream_timeout. Routes
	// whose upstreams are known to answer faster use a shorter delay
	// (config's route hedge, from recent latencies; see hedgeFor).
	Hedge time.Duration
	// LoserGrace bounds how long losers of a won race are still read for
	// health accounting.
	LoserGrace time.Duration
	// Rand returns a uniform int in [0, n); injectable for tests.
	Rand func(n int) int
	// Dial opens the goroutine race's upstream sockets; injectable for
	// tests. The loop opens its own (upsock.go).
	Dial Dialer
	// Cache is the answer cache; nil when the config turns it off. Tests
	// may replace it (with one on a fake clock) before the first query.
	Cache *cache.Cache

	flights  *flightTable
	inflight atomic.Int64
}

// New returns a forwarder reading snapshots from store.
func New(store *config.Store, log zerolog.Logger) *Forwarder {
	return &Forwarder{
		store:      store,
		log:        log,
		Stats:      &Stats{},
		Hedge:      40 * time.Millisecond,
		LoserGrace: time.Second,
		Rand:       rand.IntN,
		Dial:       rawDialer{},
		Cache:      newCache(store.Load().Config.Cache, nil),
		flights:    newFlightTable(),
	}
}

// newCache builds the cache cfg asks for (nil when it is off) on clock now
// (nil: the real one).
func newCache(cfg config.CacheConfig, now func() int64) *cache.Cache {
	if !cfg.Enabled {
		return nil
	}
	return cache.New(cache.Config{
		MaxEntries: cfg.MaxEntries, MaxTTL: cfg.MaxTTL, NegativeMaxTTL: cfg.NegativeMaxTTL,
		ServeStale: cfg.ServeStale, StaleMaxAge: cfg.StaleMaxAge, StaleAnswerTTL: cfg.StaleAnswerTTL,
		ClientTimeout: cfg.ClientTimeout, StaleRecheck: cfg.StaleRecheck, Prefetch: cfg.Prefetch,
	}, now)
}

// NewCacheOn replaces the forwarder's cache by one built from its config on
// the clock now (nanoseconds): for tests that drive time by hand. Call it
// before the first query.
func (f *Forwarder) NewCacheOn(now func() int64) {
	f.Cache = newCache(f.store.Load().Config.Cache, now)
}

// Begin reserves a slot for one query under handler_limit. Listeners call
// it before starting the query's goroutine; false means shed the query.
func (f *Forwarder) Begin() bool {
	limit := int64(f.store.Load().Config.HandlerLimit)
	if f.inflight.Add(1) > limit {
		f.inflight.Add(-1)
		f.Stats.Shed.Add(1)
		return false
	}
	return true
}

// End releases the slot taken by Begin.
func (f *Forwarder) End() { f.inflight.Add(-1) }

// InFlight returns the number of queries being handled.
func (f *Forwarder) InFlight() int64 { return f.inflight.Load() }

// Handle answers one query (its raw bytes, owned by the caller for the
// duration of the call) and returns the reply to send, or nil to send
// nothing. tcp says the query came over TCP and must go upstream over TCP.
// The UDP listeners use the event loop (Loop) instead, which follows the
// same rules without a goroutine per query.
func (f *Forwarder) Handle(q []byte, tcp bool) []byte {
	if f.Cache != nil {
		return f.handleCached(q, tcp)
	}
	p := f.classify(q)
	if p.route == nil {
		return p.reply
	}
	reply, outcome := f.race(p.snap, p.route, q, p.qEnd, tcp)
	f.Stats.count(p.kind, outcome)
	return reply
}

// plan is what classify decided for one query: either a reply to send at
// once (nil: drop it) or a route to race.
type plan struct {
	reply []byte
	snap  *config.Snapshot
	kind  RouteKind
	route *config.Route // nil: answered (or dropped) without an upstream
	qEnd  int           // end of the question section
}

// classify validates q, answers what needs no upstream (bad input, local
// zones, a route without upstreams) and routes the rest. It counts every
// query it answers itself.
func (f *Forwarder) classify(q []byte) plan {
	if len(q) < headerLen || isResponse(q) {
		// Too short to answer, or a response: never answer a response, so
		// two forwarders can't be made to loop.
		f.Stats.count(RouteNone, OutcomeDropped)
		return plan{}
	}
	if opcode(q) != 0 {
		f.Stats.count(RouteNone, OutcomeNotImp)
		return plan{reply: errorReply(q, 0, rcodeNotImp)}
	}
	if qdcount(q) != 1 {
		f.Stats.count(RouteNone, OutcomeFormErr)
		return plan{reply: errorReply(q, 0, rcodeFormErr)}
	}
	qEnd, _, name, err := question(q)
	if err != nil {
		f.Stats.count(RouteNone, OutcomeFormErr)
		return plan{reply: errorReply(q, 0, rcodeFormErr)}
	}
	snap := f.store.Load()
	if zone := localZone(name); zone != "" {
		f.Stats.count(RouteLocal, OutcomeLocal)
		return plan{reply: answerLocal(snap, zone, q, qEnd)}
	}
	kind, route := Route(snap, name)
	if len(route.Upstreams) == 0 {
		f.Stats.count(kind, OutcomeServFail)
		return plan{reply: errorReply(q, qEnd, rcodeServFail)}
	}
	return plan{snap: snap, kind: kind, route: route, qEnd: qEnd}
}

// hedgeFor returns the hedge delay for a query on r: the route's estimate
// from its upstreams' recent latencies, capped at f.Hedge, which is also
// the delay while there is no estimate.
func (f *Forwarder) hedgeFor(r *config.Route) time.Duration {
	if h := r.Hedge(); h > 0 && h < f.Hedge {
		return h
	}
	return f.Hedge
}

// Route returns the upstream route for a lower-case FQDN that is not in a
// local zone, and its kind.
func Route(snap *config.Snapshot, name string) (RouteKind, *config.Route) {
	if config.InZone(name, "mesos.") {
		return RouteMesos, snap.Mesos
	}
	if r := snap.Zone(name); r != nil {
		return RouteZone, r
	}
	return RouteDefault, snap.Default
}
