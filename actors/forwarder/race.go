package forwarder

import (
	"time"

	"github.com/spartan-dns/spartan/actors/config"
)

// race sends q to the chosen upstreams of route, one goroutine per attempt
// (exchange.go), and applies raceRules to their results. It returns the
// reply for the client (with the client's ID) and how it ended.
//
// Losers keep reading after the race (bounded by LoserGrace) so their
// health is counted; they deliver into out, which has room for all of them.
func (f *Forwarder) race(snap *config.Snapshot, route *config.Route, q []byte, qEnd int, tcp bool) ([]byte, Outcome) {
	start := time.Now()
	timeout := snap.Config.UpstreamTimeout
	hedgeDelay := f.hedgeFor(route)
	deadline := start.Add(timeout)
	var rules raceRules
	rules.reset(route.Upstreams)
	out := make(chan result, rules.limit)
	st := &raceState{grace: f.LoserGrace}
	defer st.end()

	launch := func(n int) {
		for ; n > 0; n-- {
			i := rules.next(f)
			if i < 0 {
				return
			}
			go f.exchange(st, rules.ups[i], q, qEnd, tcp, hedgeDelay, deadline, snap.Config.Limits, out)
		}
	}
	launch(2)

	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()

	var settled [maxAttempts]result // for the debug log of a failed query
	ns := 0
	failed := func() ([]byte, Outcome) {
		reply, outcome := rules.final(q, qEnd)
		if f.debug {
			f.logUnanswered(q, outcome, raceAttemptNotes(&rules, settled[:ns]))
		}
		return reply, outcome
	}
	for rules.pending > 0 {
		select {
		case r := <-out:
			settled[ns], ns = r, ns+1
			win, more := rules.settle(r.reply)
			if win != nil {
				rules.won(f, r.u, time.Since(start))
				setID(win, msgID(q))
				return win, OutcomeUpstream
			}
			launch(more)
		case <-hedge.C:
			launch(1)
		case <-expire.C:
			return failed()
		}
	}
	return failed()
}
