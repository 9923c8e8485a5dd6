package forwarder

import (
	"time"

	"github.com/spartan-dns/spartan/actors/config"
)

// maxAttempts bounds the upstreams one query may use: the first two, the
// next two when both fail fast, or one hedge.
const maxAttempts = 4

// race sends q to the chosen upstreams of route and returns the reply for
// the client (with the client's ID) and how it ended.
//
// The rules, from the spec's Dispatch paragraph:
//   - start two upstreams (all of them when the route has one or two);
//   - the first NOERROR/NXDOMAIN reply wins at once;
//   - another rcode (SERVFAIL, REFUSED, ...) is kept as a fallback and only
//     returned once nothing better can come;
//   - when every started upstream has failed fast, start the next two;
//   - when nothing has answered by the hedge delay, start one more: a
//     silent upstream never fails fast, and waiting for upstream_timeout is
//     exactly the stall Spartan exists to prevent;
//   - nothing usable by upstream_timeout: SERVFAIL.
//
// Losers keep reading after the race (bounded by LoserGrace) so their
// health is counted; they deliver into out, which has room for all of them.
func (f *Forwarder) race(snap *config.Snapshot, route *config.Route, q []byte, qEnd int, tcp bool) ([]byte, Outcome) {
	ups := route.Upstreams
	start := time.Now()
	timeout := snap.Config.UpstreamTimeout
	deadline := start.Add(timeout)
	limit := min(len(ups), maxAttempts, maxTracked)
	out := make(chan result, limit)
	st := &raceState{grace: f.LoserGrace}
	defer st.end()

	var tried uint64
	launched, pending := 0, 0
	launch := func(n int) {
		for ; n > 0 && launched < limit; n-- {
			i := f.pick(ups, tried)
			if i < 0 {
				return
			}
			tried |= 1 << i
			launched++
			pending++
			go f.exchange(st, ups[i], q, qEnd, tcp, start, deadline, snap.Config.Limits, out)
		}
	}
	launch(2)

	hedge := time.NewTimer(f.Hedge)
	defer hedge.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()

	var fallback []byte
	for pending > 0 {
		select {
		case r := <-out:
			pending--
			if r.reply != nil && isGoodRcode(rcode(r.reply)) {
				setID(r.reply, msgID(q))
				return r.reply, OutcomeUpstream
			}
			if r.reply != nil && fallback == nil {
				fallback = r.reply
			}
			if pending == 0 {
				launch(2) // all failed fast: try the next healthiest
			}
		case <-hedge.C:
			launch(1)
		case <-expire.C:
			pending = 0
		}
	}
	if fallback != nil {
		setID(fallback, msgID(q))
		return fallback, OutcomeUpstreamError
	}
	return errorReply(q, qEnd, rcodeServFail), OutcomeServFail
}
