package forwarder

import (
	"sync"
	"time"

	"github.com/spartan-dns/spartan/actors/config"

	"github.com/spartan-dns/spartan/actors/state"
)

// race sends q to the chosen upstreams of route, one goroutine per attempt
// (exchange.go), and applies raceRules to their results. It returns the
// reply for the client (with the client's ID) and how it ended.
//
// Losers keep reading after the race (bounded by LoserGrace) so their
// health is counted; they deliver into out, which has room for all of them.
func (f *Forwarder) race(snap *state.Snapshot, route *state.Route, q []byte, qEnd int, tcp bool) ([]byte, Outcome) {
	start := time.Now()
	timeout := snap.Config.UpstreamTimeout
	var rules raceRules
	rules.reset(route.Upstreams)
	r := &goRace{
		q: q, qEnd: qEnd, tcp: tcp,
		hedge:    f.hedgeFor(route),
		deadline: start.Add(timeout),
		limits:   snap.Config.Limits,
		grace:    f.LoserGrace,
		out:      make(chan attemptResult, rules.limit+maxRetransmits),
	}
	defer r.end()

	launch := func(n int) {
		for ; n > 0; n-- {
			i := rules.next(f)
			if i < 0 {
				return
			}
			go f.exchange(r, i, rules.ups[i])
		}
	}
	launch(2)

	// The hedge timer, then the retry timers (UDP only).
	hedge := time.NewTimer(r.hedge)
	defer hedge.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()

	var settled [maxSends]attemptResult // for the debug log of a failed query
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
		case res := <-r.out:
			settled[ns], ns = res, ns+1
			win, more := rules.settle(res.up, res.reply)
			if win != nil {
				rules.won(f, res.u, time.Since(start))
				setID(win, msgID(q))
				return win, OutcomeUpstream
			}
			launch(more)
		case <-hedge.C:
			if i := rules.again(f, !tcp); i >= 0 {
				go f.exchange(r, i, rules.ups[i])
			}
			if gap, ok := rules.retryIn(r.hedge, timeout-time.Since(start), !tcp); ok {
				hedge.Reset(gap)
			}
		case <-expire.C:
			return failed()
		}
	}
	return failed()
}

// goRace is what the attempts of one query's goroutine race share: the
// query (read-only while they run), its limits, and the channel their
// results come back on. When the race ends, the losers' sockets get a read
// deadline LoserGrace away (never past upstream_timeout): they are still
// read for health accounting, but not for long.
type goRace struct {
	q        []byte // the client's query
	qEnd     int    // end of its question
	tcp      bool   // upstream queries go over TCP
	hedge    time.Duration
	deadline time.Time // upstream_timeout after the query came
	limits   config.LimitsConfig
	grace    time.Duration
	out      chan attemptResult // one per attempt

	mu    sync.Mutex
	over  bool
	conns [maxSends]Conn
	n     int
}

// attemptResult is how one attempt ended: its validated reply, nil when it
// failed; timedOut (for the debug log) says it failed by upstream_timeout.
type attemptResult struct {
	u        *state.Upstream
	up       int // u's index in the route
	reply    []byte
	timedOut bool
}

// register adds an attempt's socket, so the race's end can cut its reads
// short.
func (r *goRace) register(c Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		_ = c.SetReadDeadline(r.graceEnd())
		return
	}
	r.conns[r.n] = c
	r.n++
}

func (r *goRace) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return
	}
	r.over = true
	d := r.graceEnd()
	for _, c := range r.conns[:r.n] {
		_ = c.SetReadDeadline(d) // harmless on a closed conn
	}
}

// graceEnd is when losers stop being read, for a race ending now.
func (r *goRace) graceEnd() time.Time {
	d := time.Now().Add(r.grace)
	if d.After(r.deadline) {
		return r.deadline
	}
	return d
}

func (r *goRace) isOver() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.over
}
