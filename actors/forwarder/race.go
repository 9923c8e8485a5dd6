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
	timeout := snap.Config.UpstreamTimeout
	var rules raceRules
	rules.reset(route.Upstreams)
	r := &goRace{
		q: q, qEnd: qEnd, tcp: tcp,
		hedge:    f.hedgeFor(route),
		deadline: time.Now().Add(timeout),
		limits:   snap.Config.Limits,
		grace:    f.LoserGrace,
		out:      make(chan []byte, rules.limit),
	}
	defer r.end()

	launch := func(n int) {
		for ; n > 0; n-- {
			i := rules.next(f)
			if i < 0 {
				return
			}
			go f.exchange(r, rules.ups[i])
		}
	}
	launch(2)

	hedge := time.NewTimer(r.hedge)
	defer hedge.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()

	for rules.pending > 0 {
		select {
		case reply := <-r.out:
			win, more := rules.settle(reply)
			if win != nil {
				setID(win, msgID(q))
				return win, OutcomeUpstream
			}
			launch(more)
		case <-hedge.C:
			launch(1)
		case <-expire.C:
			return rules.final(q, qEnd)
		}
	}
	return rules.final(q, qEnd)
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
	out      chan []byte // one per attempt: its validated reply, nil when it failed

	mu    sync.Mutex
	over  bool
	conns [maxAttempts]Conn
	n     int
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
