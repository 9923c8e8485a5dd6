package forwarder

import (
	"sync/atomic"

	"github.com/spartan-dns/spartan/actors/state"
)

// RouteKind is the routing row a query took.
type RouteKind int

// Routing rows.
const (
	RouteNone    RouteKind = iota // rejected before routing
	RouteLocal                    // spartan., zk., localhost.
	RouteMesos                    // *.mesos to the masters
	RouteZone                     // a forward_zones entry
	RouteDefault                  // upstream_resolvers
	numRoutes
)

// NumRouteKinds is how many RouteKinds there are.
const NumRouteKinds = int(numRoutes)

var routeNames = [numRoutes]string{"none", "local", "mesos", "zone", "default"}

func (r RouteKind) String() string { return routeNames[r] }

// Outcome is how a query ended.
type Outcome int

// Query outcomes.
const (
	OutcomeUpstream      Outcome = iota // an upstream's good reply (NOERROR/NXDOMAIN)
	OutcomeUpstreamError                // an upstream's own SERVFAIL/REFUSED/... reply
	OutcomeServFail                     // no usable reply: Spartan's SERVFAIL
	OutcomeLocal                        // answered from a local zone
	OutcomeFormErr                      // malformed or multi-question query
	OutcomeNotImp                       // not a standard query
	OutcomeDropped                      // too short or QR set: not answered
	OutcomeCache                        // answered from the cache
	OutcomeStale                        // a stale answer from the cache (RFC 8767)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"upstream", "upstream_error", "servfail", "local", "formerr", "notimp", "dropped", "cache", "stale"}

func (o Outcome) String() string { return outcomeNames[o] }

// Stats counts queries. Plain atomics: the hot path pays one atomic add per
// query, and the metrics actor reads them at scrape time.
type Stats struct {
	Queries [numRoutes][numOutcomes]atomic.Uint64
	Shed    atomic.Uint64 // queries dropped (UDP) or connections closed (TCP) over handler_limit
	Race    RaceStats
	// Answer is the latency of queries answered with an upstream's good
	// reply, from the query's arrival to the winning reply.
	Answer state.Latency
}

// RaceStats counts the attempts beyond a race's first two and the races
// they won. Only those are counted, so a race that the first two settle
// (nearly all) costs nothing more: its wins are the upstream outcome's
// count minus these.
type RaceStats struct {
	Hedges         atomic.Uint64 // attempts started by the hedge delay (nothing had answered)
	Escalations    atomic.Uint64 // attempts started because every started one failed fast
	Retransmits    atomic.Uint64 // upstream queries sent again: no upstream was left, nothing had answered (UDP)
	HedgeWins      atomic.Uint64 // races won by a hedge attempt
	EscalationWins atomic.Uint64 // races won by an escalation attempt
}

func (s *Stats) count(r RouteKind, o Outcome) { s.Queries[r][o].Add(1) }

// Each calls fn for every route and outcome with its count.
func (s *Stats) Each(fn func(r RouteKind, o Outcome, n uint64)) {
	for r := range numRoutes {
		for o := range numOutcomes {
			fn(r, o, s.Queries[r][o].Load())
		}
	}
}
