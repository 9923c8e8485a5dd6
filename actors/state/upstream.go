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

// Attempt scores one upstream query (an attempt of a query's race) for its
// upstream's health. It is the one place the scoring rule lives; both
// engines of the query path (the UDP event loop and the goroutine race)
// drive it, each from its own events:
//
//   - no reply by the hedge delay: a stall (Stall), counted at once so a
//     silent upstream loses rank while the query is still in flight;
//   - a valid reply (Replied): a success and its latency when the rcode is
//     NOERROR/NXDOMAIN, else a failure; a stall counted before is taken
//     back, since the upstream was slow, not silent;
//   - an error (Failed: no socket, send refused, ICMP unreachable, a reset
//     or broken TCP stream): a failure; a stall counted before stands;
//   - no reply by upstream_timeout (TimedOut): a failure, unless a stall
//     was counted, which stands (one silence counts once);
//   - given up (Abandon: the race ended and LoserGrace ran out before
//     upstream_timeout): nothing more; a stall counted before stands.
//
// An attempt ends once (Replied, Failed, TimedOut or Abandon); later calls
// do nothing. The methods are safe for concurrent use (the goroutine race
// counts stalls from a timer goroutine) and allocate nothing.
type Attempt struct {
	u     *Upstream
	state atomic.Uint32
}

// Attempt states.
const (
	attemptPending uint32 = iota // sent, no reply, no stall yet
	attemptStalled               // no reply by the hedge delay: a stall was counted
	attemptEnded
)

// Start makes a the scoring of a new attempt at u.
func (a *Attempt) Start(u *Upstream) {
	a.u = u
	a.state.Store(attemptPending)
}

// Upstream is the upstream the attempt queries.
func (a *Attempt) Upstream() *Upstream { return a.u }

// Pending says the attempt has neither ended nor stalled: its stall timer
// still has a stall to count.
func (a *Attempt) Pending() bool { return a.state.Load() == attemptPending }

// Ended says the attempt has ended.
func (a *Attempt) Ended() bool { return a.state.Load() == attemptEnded }

// Stall counts a stall: the hedge delay passed without a reply. It does
// nothing if the attempt has ended or already stalled.
func (a *Attempt) Stall() {
	if a.state.CompareAndSwap(attemptPending, attemptStalled) {
		a.u.Stalls.Add(1)
	}
}

// Replied ends the attempt with a valid reply; good says its rcode is
// NOERROR or NXDOMAIN, rtt is the time since the attempt's send.
func (a *Attempt) Replied(good bool, rtt time.Duration) {
	switch a.state.Swap(attemptEnded) {
	case attemptEnded:
		return
	case attemptStalled:
		a.u.LateReplies.Add(1) // it answered after all: take the stall back
	}
	if good {
		a.u.Successes.Add(1)
		a.u.Latency.Observe(rtt)
	} else {
		a.u.Failures.Add(1)
	}
}

// Failed ends the attempt with an error.
func (a *Attempt) Failed() {
	if a.state.Swap(attemptEnded) != attemptEnded {
		a.u.Failures.Add(1)
	}
}

// TimedOut ends the attempt at upstream_timeout without a reply.
func (a *Attempt) TimedOut() {
	if a.state.Swap(attemptEnded) == attemptPending {
		a.u.Failures.Add(1)
	}
}

// Abandon ends the attempt without counting anything more: the race no
// longer waits for it.
func (a *Attempt) Abandon() { a.state.Store(attemptEnded) }
