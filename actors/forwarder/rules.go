package forwarder

import "github.com/spartan-dns/spartan/actors/state"

// maxAttempts bounds the upstreams one query may use: the first two, the
// next two when both fail fast, or one hedge.
const maxAttempts = 4

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
//   - nothing usable by upstream_timeout: SERVFAIL.
type raceRules struct {
	ups      []*state.Upstream
	limit    int    // attempts allowed: min(len(ups), maxAttempts)
	tried    uint64 // bit i: ups[i] was started
	launched int
	pending  int    // started, not yet settled
	fallback []byte // first non-winning upstream reply, owned by the rules
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
	r.launched++
	r.pending++
	return i
}

// settle records the end of one attempt: its validated reply, or nil when
// it failed or timed out. It returns the winning reply, if this one wins,
// and how many more attempts to start now.
func (r *raceRules) settle(reply []byte) (win []byte, more int) {
	r.pending--
	if reply != nil && isGoodRcode(rcode(reply)) {
		return reply, 0
	}
	if reply != nil && r.fallback == nil {
		r.fallback = reply
	}
	if r.pending == 0 {
		return nil, 2 // all failed fast: try the next healthiest
	}
	return nil, 0
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
