package state

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream is one upstream server. The query path only adds to its counters
// (atomics, no locks); the config actor alone turns them into a health
// score, which the query path reads to choose upstreams.
type Upstream struct {
	Addr netip.AddrPort

	Successes   atomic.Uint64 // valid replies
	Failures    atomic.Uint64 // errors, timeouts, SERVFAIL/REFUSED
	Stalls      atomic.Uint64 // no reply by the hedge delay
	LateReplies atomic.Uint64 // replies that came after a stall was counted: the stall is taken back
	Latency     Latency       // reply latencies of Successes

	score atomic.Uint64 // float64 bits; written by the config actor only

	// health bookkeeping, touched only by the config actor goroutine.
	seenFailures, seenStalls, seenLate uint64
	scoreF                             float64
	seenLatency                        [len(LatencyBuckets) + 1]uint64
	recent                             [len(LatencyBuckets) + 1]float64 // decayed reply counts per latency bucket
}

// Score is the decayed count of recent failures: 0 is perfectly healthy.
func (u *Upstream) Score() float64 { return math.Float64frombits(u.score.Load()) }

// Rank is the whole number of recent failures; upstreams with equal ranks
// are chosen at random among themselves.
func (u *Upstream) Rank() int { return int(u.Score()) }

// Health constants. A failure counts 1, decays with a 15 s half-life and the
// score is capped, so an upstream that was dead for a long time is tried
// again about a minute after it stops failing (the original Spartan used a
// one-minute window).
const (
	healthHalfLife = 15 * time.Second
	healthMaxScore = 16
)

// updateHealth folds the counters added since the last call into the score.
// Only the config actor calls it.
func (u *Upstream) updateHealth(dt time.Duration) {
	f, st, late := u.Failures.Load(), u.Stalls.Load(), u.LateReplies.Load()
	fresh := float64(f-u.seenFailures) + float64(st-u.seenStalls) - float64(late-u.seenLate)
	u.seenFailures, u.seenStalls, u.seenLate = f, st, late
	s := u.scoreF*math.Exp2(-dt.Seconds()/healthHalfLife.Seconds()) + fresh
	s = min(max(s, 0), healthMaxScore)
	if s < 0.01 {
		s = 0
	}
	u.scoreF = s
	u.score.Store(math.Float64bits(s))
}

// Registry hands out one *Upstream per address and one hedge delay per
// route name, so counters, health and hedge estimates survive across
// snapshots.
type Registry struct {
	mu     sync.Mutex
	m      map[netip.AddrPort]*Upstream
	hedges map[string]*routeHedge
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{m: map[netip.AddrPort]*Upstream{}, hedges: map[string]*routeHedge{}}
}

// Get returns the upstream for addr, creating it on first use.
func (r *Registry) Get(addr netip.AddrPort) *Upstream {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.m[addr]
	if !ok {
		u = &Upstream{Addr: addr}
		r.m[addr] = u
	}
	return u
}
