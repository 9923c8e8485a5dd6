package state

import (
	"math"
	"sync/atomic"
	"time"
)

// The hedge delay of a route: how long a query waits for a first reply
// before it starts one more upstream, and after which a silent upstream
// counts a stall. A fixed delay has to fit the slowest upstreams a node may
// use (40 ms); for a route whose upstreams answer in a millisecond that is
// forty times longer than a reply ever takes, and it is exactly the wait a
// query pays when both of its chosen upstreams have just died. So the
// config actor derives each route's delay from its upstreams' recent reply
// latencies: a multiple of their p99, within bounds. The forwarder caps it
// at HedgeCeiling (its Hedge field, which tests may change) and uses the
// ceiling while a route has no estimate. All the bounds are here.
//
// The floor is 10 ms, not less: on a loaded node, scheduling delays of a
// few milliseconds are routine, and a hedge below them would mostly add
// upstream queries and count stalls against healthy upstreams. 10 ms still
// cuts the wait behind two dead upstreams by four.
const (
	// HedgeCeiling is the longest hedge delay, and the delay of a route
	// without an estimate: it fits the slowest upstreams a node may use.
	HedgeCeiling    = 40 * time.Millisecond
	latencyHalfLife = 10 * time.Second // how fast old latencies fade
	hedgeMinSamples = 20               // fewer recent replies: no estimate
	hedgeFactor     = 4                // the delay is hedgeFactor × p99
	hedgeFloor      = 10 * time.Millisecond
)

// routeHedge holds a route's current hedge delay in ns; 0: no estimate.
// It is live state outside the snapshot: the Registry hands out one per
// route name, every snapshot's route of that name points at it, and the
// config actor rewrites it every tick, so an estimate survives the snapshot
// published when masters change.
type routeHedge struct{ ns atomic.Int64 }

// hedge returns the hedge delay of the route called name ("default",
// "mesos" or a zone), creating it on first use.
func (r *Registry) hedge(name string) *routeHedge {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hedges[name]
	if !ok {
		h = &routeHedge{}
		r.hedges[name] = h
	}
	return h
}

// Hedge returns the route's hedge delay, or 0 while there is no estimate.
func (r *Route) Hedge() time.Duration { return time.Duration(r.hedge.ns.Load()) }

// foldLatency adds the replies observed since the last call to u's recent
// latency histogram, after decaying it by dt. Only the config actor calls it.
func (u *Upstream) foldLatency(dt time.Duration) {
	decay := math.Exp2(-dt.Seconds() / latencyHalfLife.Seconds())
	for i := range u.recent {
		n := u.Latency.Buckets[i].Load()
		u.recent[i] = u.recent[i]*decay + float64(n-u.seenLatency[i])
		u.seenLatency[i] = n
	}
}

// updateHedge recomputes r's hedge delay from its upstreams' recent
// latencies. Only the config actor calls it, after foldLatency.
func (r *Route) updateHedge() {
	var pooled [len(LatencyBuckets) + 1]float64
	total := 0.0
	for _, u := range r.Upstreams {
		for i, n := range u.recent {
			pooled[i] += n
			total += n
		}
	}
	if total < hedgeMinSamples {
		r.hedge.ns.Store(0)
		return
	}
	cum := 0.0
	for i, n := range pooled[:len(LatencyBuckets)] {
		cum += n
		if cum >= 0.99*total {
			d := time.Duration(hedgeFactor * LatencyBuckets[i] * float64(time.Second))
			r.hedge.ns.Store(int64(max(d, hedgeFloor)))
			return
		}
	}
	r.hedge.ns.Store(0) // p99 beyond the last bucket: as good as no estimate
}
