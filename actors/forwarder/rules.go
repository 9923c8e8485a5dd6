package forwarder

import (
	"time"

	"github.com/spartan-dns/spartan/actors/state"
)

// maxAttempts bounds the upstreams one query may use: the first two, the
// next two when both fail fast, or one hedge.
const maxAttempts = 4

// Retransmits (UDP only): a datagram lost on the way to or from every
// upstream of a query would otherwise lose the query. maxRetransmits bounds
// them per query, maxRetryGap the interval between two of them: with the
// 40 ms hedge ceiling they go out at 40 ms (when no other upstream is
// left), 120, 280, 600 and 1240 ms, well inside the default 5 s
// upstream_timeout, and a dead upstream gets at most 4 extra queries per
// client query.
const (
	maxRetransmits = 4
	maxRetryGap    = time.Second
)

// maxSends bounds the upstream queries of one query: its attempts and its
// retransmits.
const maxSends = maxAttempts + maxRetransmits

// raceRules holds the decisions of one query's race, from the spec's
// Dispatch paragraph. It does no I/O and reads no clock, so both engines
// apply exactly the same rules: the UDP event loop (loop.go), which drives
// it from socket events, and the goroutine race (race.go, used for TCP and
// the HTTP API), which drives it from channel results.
//
//   - start two upstreams (all of them when the route has one or two);
//   - the first NOERROR/NXDOMAIN reply wins at once;
//   - another rcode (SERVFAIL, REFUSED, ...) is kept as a fallback and only
//     returned once nothing better can come;
//   - when every started upstream has failed fast, start the next two;
//   - when nothing has answered by the hedge delay, start one more: a
//     silent upstream never fails fast, and waiting for upstream_timeout is
//     exactly the stall Spartan exists to prevent;
//   - over UDP, when nothing has answered by the hedge delay and no
//     upstream is left to start, and again at growing intervals after it
//     (2, 4, 8 ... × the hedge delay, at most maxRetryGap apart) while
//     upstream_timeout leaves time: retransmit, as a new upstream query
//     with a fresh ID and a fresh source port (RFC 5452), to the healthiest
//     upstream still silent (one that replied or failed fast is not asked
//     again: the network reached it). A datagram lost to or from every
//     chosen upstream then costs a retry interval, not the query. At most
//     maxRetransmits; never once a reply has won (the race is over). Over
//     TCP nothing is lost: no retransmits;
//   - nothing usable by upstream_timeout: SERVFAIL.
type raceRules struct {
	ups         []*state.Upstream
	limit       int    // attempts allowed: min(len(ups), maxAttempts)
	tried       uint64 // bit i: ups[i] was started
	heard       uint64 // bit i: an attempt at ups[i] replied or failed
	launched    int
	retransmits int
	rounds      int    // hedge and retry timers fired
	pending     int    // started (attempts and retransmits), not yet settled
	fallback    []byte // first non-winning upstream reply, owned by the rules

	escalated bool   // every started attempt failed fast once: later ones are escalations
	hedges    uint64 // bit i: ups[i] was started by the hedge delay
	escs      uint64 // bit i: ups[i] was started by an escalation
}

func (r *raceRules) reset(ups []*state.Upstream) {
	*r = raceRules{ups: ups, limit: min(len(ups), maxAttempts, maxTracked)}
}

// next picks the upstream for one more attempt and records it as started;
// -1 when none is left.
func (r *raceRules) next(f *Forwarder) int {
	if r.launched >= r.limit {
		return -1
	}
	i := f.pick(r.ups, r.tried)
	if i < 0 {
		return -1
	}
	r.tried |= 1 << i
	if r.launched >= 2 { // beyond the first two: counted by why (RaceStats)
		if r.escalated {
			r.escs |= 1 << i
			f.Stats.Race.Escalations.Add(1)
		} else {
			r.hedges |= 1 << i
			f.Stats.Race.Hedges.Add(1)
		}
	}
	r.launched++
	r.pending++
	return i
}

// again is the rule of the hedge timer and of each retry timer after it:
// the upstream to query now, or -1. An upstream not yet tried comes first;
// else, over UDP, a retransmit to the healthiest upstream still silent.
func (r *raceRules) again(f *Forwarder, udp bool) int {
	r.rounds++
	if i := r.next(f); i >= 0 {
		return i
	}
	if !udp || r.retransmits >= maxRetransmits {
		return -1
	}
	i := f.pick(r.ups, ^(r.tried &^ r.heard))
	if i < 0 {
		return -1
	}
	r.retransmits++
	r.pending++
	f.Stats.Race.Retransmits.Add(1)
	return i
}

// retryIn is, after the hedge or a retry timer has fired (again), how long
// until the next retry timer: 2^rounds × the hedge delay, at most
// maxRetryGap; false when there is none (TCP, the retransmits used up, or
// upstream_timeout, left away, comes first).
func (r *raceRules) retryIn(hedge, left time.Duration, udp bool) (time.Duration, bool) {
	if !udp || r.retransmits >= maxRetransmits || r.rounds == 0 {
		return 0, false
	}
	gap := maxRetryGap
	if r.rounds < 16 {
		gap = min(hedge<<r.rounds, maxRetryGap)
	}
	return gap, gap < left
}

// settle records the end of one attempt at ups[i]: its validated reply, or
// nil when it failed or timed out. It returns the winning reply, if this
// one wins, and how many more attempts to start now.
func (r *raceRules) settle(i int, reply []byte) (win []byte, more int) {
	r.pending--
	if i >= 0 && i < maxTracked {
		r.heard |= 1 << i
	}
	if reply != nil && isGoodRcode(rcode(reply)) {
		return reply, 0
	}
	if reply != nil && r.fallback == nil {
		r.fallback = reply
	}
	if r.pending == 0 {
		r.escalated = true
		return nil, 2 // all failed fast: try the next healthiest
	}
	return nil, 0
}

// won records a race won by u's reply, d after the query came: the answer
// latency, and the win when u was a hedge or an escalation attempt.
func (r *raceRules) won(f *Forwarder, u *state.Upstream, d time.Duration) {
	f.Stats.Answer.Observe(d)
	if r.hedges|r.escs == 0 {
		return
	}
	for i, x := range r.ups {
		if x != u {
			continue
		}
		switch {
		case r.escs&(1<<i) != 0:
			f.Stats.Race.EscalationWins.Add(1)
		case r.hedges&(1<<i) != 0:
			f.Stats.Race.HedgeWins.Add(1)
		}
		return
	}
}

// final is the reply when nothing won: an upstream's own error reply if
// one came, else Spartan's SERVFAIL.
func (r *raceRules) final(q []byte, qEnd int) ([]byte, Outcome) {
	if r.fallback != nil {
		setID(r.fallback, msgID(q))
		return r.fallback, OutcomeUpstreamError
	}
	return errorReply(q, qEnd, rcodeServFail), OutcomeServFail
}
