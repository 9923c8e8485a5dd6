package forwarder

import (
	"testing"
	"time"
)

// Only a timer with work to do may wake the loop. A query usually ends
// well before its stall timers (the hedge delay) and its grace timer (a
// second after the answer) are due; those timers must not set the loop's
// next wake-up.
func TestLoopDropsTimersWithNothingToDo(t *testing.T) {
	const winnerStall, loserStall, grace, expire = 10, 20, 30, 40
	for _, tc := range []struct {
		name  string
		setup func(q *loopQuery)
		end   bool  // the query ends (its slot is freed)
		want  int64 // the next timer, 0: none
	}{
		{name: "query ended: none of its timers", end: true, want: 0},
		{name: "not yet hedged: the first stall timer hedges, even for a settled attempt",
			setup: func(q *loopQuery) { q.att[0].score.Abandon() }, want: winnerStall},
		{name: "answered and hedged: a loser still out keeps its stall timer",
			setup: func(q *loopQuery) { q.hedged, q.decided = true, true; q.att[0].score.Abandon() }, want: loserStall},
		{name: "hedged, both settled: only the query's own timers",
			setup: func(q *loopQuery) {
				q.hedged, q.decided = true, true
				q.att[0].score.Abandon()
				q.att[1].score.Abandon()
			}, want: grace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := drivenLoop(t)
			s := l.alloc()
			q := &l.slots[s]
			q.natt = 2
			q.att[0] = loopAttempt{sock: -1} // pending: sent, no reply
			q.att[1] = loopAttempt{sock: -1}
			l.stallQ.push(timerEntry{when: winnerStall, slot: s, gen: q.gen, attempt: 0})
			l.stallQ.push(timerEntry{when: loserStall, slot: s, gen: q.gen, attempt: 1})
			l.graceQ.push(timerEntry{when: grace, slot: s, gen: q.gen})
			l.expireQ.push(timerEntry{when: expire, slot: s, gen: q.gen})
			if tc.setup != nil {
				tc.setup(q)
			}
			if tc.end {
				q.decided = true // answered: freeing it ends nothing else
				l.freeQuery(s)
			}
			var want time.Time
			if tc.want != 0 {
				want = l.epoch.Add(time.Duration(tc.want))
			}
			at := func(w time.Time) string {
				if w.IsZero() {
					return "none"
				}
				return w.Sub(l.epoch).String()
			}
			if got := l.nextTimer(); !got.Equal(want) {
				t.Errorf("next timer: %s, want %s", at(got), at(want))
			}
		})
	}
}
