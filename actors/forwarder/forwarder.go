// Package forwarder is Spartan's query path: it routes one query, answers
// local zones, and races the chosen upstreams. It has two engines with the
// same race rules (rules.go) and the same scoring of each upstream attempt
// (state.Attempt): Loop, the UDP listeners' event loop, and Answer, a
// goroutine per query (TCP listeners, the HTTP API).
package forwarder

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/actors/state"
)

// Forwarder answers queries. It holds no mutable configuration: every query
// loads the current snapshot from the store once, in Begin.
type Forwarder struct {
	store *state.Store
	log   zerolog.Logger
	Stats *Stats

	// Hedge is the longest the race waits for a first reply before it
	// starts one more upstream (when the route has one left), and after
	// which a silent upstream counts a stall. Silent upstreams are the
	// failure Spartan exists for: without a hedge, a query whose two chosen
	// upstreams both went silent would wait for upstream_timeout. Routes
	// whose upstreams are known to answer faster use a shorter delay
	// (the route's hedge, from recent latencies; see hedgeFor). It defaults
	// to state.HedgeCeiling.
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

	flights *flightTable

	// Tap is the dnstap query log; nil when dnstap is off (tap.go).
	Tap *dnstap.Tap

	inflight atomic.Int64
	debug    bool // log each query without a good reply (debuglog.go)
}

// New returns a forwarder reading snapshots from store.
func New(store *state.Store, log zerolog.Logger) *Forwarder {
	return &Forwarder{
		store:      store,
		log:        log,
		Stats:      &Stats{},
		Hedge:      state.HedgeCeiling,
		LoserGrace: time.Second,
		Rand:       rand.IntN,
		Dial:       rawDialer{},
		debug:      debugOn(log),
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

// Begin reserves a slot for one query under handler_limit and returns the
// snapshot to serve it under: the query's one load of the store (Answer and
// the loop take it from here). Listeners call it before starting the query;
// nil means shed the query (counted).
func (f *Forwarder) Begin() *state.Snapshot {
	snap := f.store.Load()
	if f.inflight.Add(1) > int64(snap.Config.HandlerLimit) {
		f.inflight.Add(-1)
		f.Stats.Shed.Add(1)
		return nil
	}
	return snap
}

// End releases the slot taken by Begin.
func (f *Forwarder) End() { f.inflight.Add(-1) }

// InFlight returns the number of queries being handled.
func (f *Forwarder) InFlight() int64 { return f.inflight.Load() }

// Answer answers one query (its raw bytes, owned by the caller for the
// duration of the call) under snap, the snapshot Begin returned, and
// returns the reply to send, or nil to send nothing. tcp says the query
// came over TCP and must go upstream over TCP. The UDP listeners use the
// event loop (Loop) instead, which follows the same rules without a
// goroutine per query.
func (f *Forwarder) Answer(snap *state.Snapshot, q []byte, tcp bool) []byte {
	reply, _ := f.AnswerFrom(snap, q, tcp)
	return reply
}

// AnswerFrom is Answer that also says whether the reply came from the
// cache (fresh or stale), which the dnstap log marks.
func (f *Forwarder) AnswerFrom(snap *state.Snapshot, q []byte, tcp bool) (reply []byte, cached bool) {
	if f.Cache != nil {
		return f.answerCached(snap, q, tcp)
	}
	p := f.classify(snap, q)
	if p.route == nil {
		return p.reply, false
	}
	reply, outcome := f.race(snap, p.route, q, p.qEnd, tcp)
	f.Stats.count(p.kind, outcome)
	return reply, false
}

// Handle is Answer under the current snapshot, for a caller that holds no
// handler_limit slot.
func (f *Forwarder) Handle(q []byte, tcp bool) []byte { return f.Answer(f.store.Load(), q, tcp) }

// Drops says whether q is dropped unanswered, and counts it if so: too
// short for a DNS header, or a response (never answer a response, so two
// forwarders can't be made to loop). classify checks it first; the TCP
// listener checks it before a query may take a pipeline slot.
func (f *Forwarder) Drops(q []byte) bool {
	if len(q) < headerLen || isResponse(q) {
		f.Stats.count(RouteNone, OutcomeDropped)
		return true
	}
	return false
}

// newID is the ID of one upstream query: fresh and random (RFC 5452), never
// the client's.
func (f *Forwarder) newID() uint16 { return uint16(f.Rand(1 << 16)) }

// plan is what classify decided for one query: either a reply to send at
// once (nil: drop it) or a route to race.
type plan struct {
	reply []byte
	kind  RouteKind
	route *state.Route // nil: answered (or dropped) without an upstream
	qEnd  int          // end of the question section
}

// classify validates q, answers what needs no upstream (bad input, local
// zones, a route without upstreams) and routes the rest under snap. It
// counts every query it answers (or drops) itself.
func (f *Forwarder) classify(snap *state.Snapshot, q []byte) plan {
	if f.Drops(q) {
		return plan{}
	}
	if opcode(q) != 0 {
		f.Stats.count(RouteNone, OutcomeNotImp)
		return plan{reply: notImplemented(q)}
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
	if zone := localZone(name); zone != "" {
		f.Stats.count(RouteLocal, OutcomeLocal)
		return plan{reply: answerLocal(snap, zone, q, qEnd)}
	}
	kind, route := RouteFor(snap, name)
	if len(route.Upstreams) == 0 {
		f.Stats.count(kind, OutcomeServFail)
		return plan{reply: errorReply(q, qEnd, rcodeServFail)}
	}
	return plan{kind: kind, route: route, qEnd: qEnd}
}

// hedgeFor returns the hedge delay for a query on r: the route's estimate
// from its upstreams' recent latencies, capped at f.Hedge, which is also
// the delay while there is no estimate.
func (f *Forwarder) hedgeFor(r *state.Route) time.Duration {
	if h := r.Hedge(); h > 0 && h < f.Hedge {
		return h
	}
	return f.Hedge
}

// RouteFor returns the upstream route for a lower-case FQDN that is not in a
// local zone, and its kind.
func RouteFor(snap *state.Snapshot, name string) (RouteKind, *state.Route) {
	if state.InZone(name, "mesos.") {
		return RouteMesos, snap.Mesos
	}
	if r := snap.Zone(name); r != nil {
		return RouteZone, r
	}
	return RouteDefault, snap.Default
}
