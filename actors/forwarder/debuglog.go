package forwarder

import (
	"strconv"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// debugOn reports whether the forwarder logs at debug level. New asks the
// logger once, so the query path pays one bool test per failed query, and
// builds the notes below only when someone is reading them.
func debugOn(log zerolog.Logger) bool {
	return log.GetLevel() <= zerolog.DebugLevel && zerolog.GlobalLevel() <= zerolog.DebugLevel
}

// failedFast is loopAttempt.rcode for an attempt that failed at once.
const failedFast = 0xFF

// Attempt notes: what one upstream of a failed query did.
const (
	noteNoReply = "no reply before upstream_timeout"
	noteFailed  = "failed fast (refused, unreachable or not sent)"
)

func rcodeNote(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return "replied " + s
	}
	return "replied rcode " + strconv.Itoa(rc)
}

// logUnanswered logs, at debug level, a query that got no good reply:
// which upstreams were tried and what each did ("ADDR: NOTE").
func (f *Forwarder) logUnanswered(q []byte, outcome Outcome, attempts []string) {
	_, qtype, name, _ := question(q)
	f.log.Debug().Str("name", name).Str("qtype", dns.TypeToString[qtype]).
		Str("outcome", outcome.String()).Strs("upstreams", attempts).
		Msg("query got no good reply")
}

// loopAttemptNotes describes the attempts of a Loop query.
func (q *loopQuery) attemptNotes() []string {
	var n upstreamNotes
	for k := range q.natt {
		a := &q.att[k]
		note := noteNoReply
		switch {
		case a.rcode == failedFast:
			note = noteFailed
		case a.rcode > 0:
			note = rcodeNote(int(a.rcode) - 1)
		}
		n.add(a.score.Upstream().Addr.String(), note)
	}
	return n.lines()
}

// raceAttemptNotes describes the attempts of a goroutine race: the results
// that came back, then the upstreams still out.
func raceAttemptNotes(rules *raceRules, settled []attemptResult) []string {
	var n upstreamNotes
	for _, r := range settled {
		note := noteFailed
		switch {
		case r.reply != nil:
			note = rcodeNote(rcode(r.reply))
		case r.timedOut:
			note = noteNoReply
		}
		n.add(r.u.Addr.String(), note)
	}
	for i, u := range rules.ups {
		if rules.tried&(1<<i) != 0 {
			n.add(u.Addr.String(), noteNoReply)
		}
	}
	return n.lines()
}

// upstreamNotes keeps one note per upstream, in the order they were
// tried: a query that retransmitted sent one upstream several queries,
// and the note is the most telling of their outcomes (a reply, else a
// fast failure, else none).
type upstreamNotes struct{ addrs, notes []string }

func (n *upstreamNotes) add(addr, note string) {
	for i, a := range n.addrs {
		if a == addr {
			if noteRank(note) > noteRank(n.notes[i]) {
				n.notes[i] = note
			}
			return
		}
	}
	n.addrs, n.notes = append(n.addrs, addr), append(n.notes, note)
}

func noteRank(note string) int {
	switch note {
	case noteNoReply:
		return 0
	case noteFailed:
		return 1
	}
	return 2
}

func (n *upstreamNotes) lines() []string {
	out := make([]string, len(n.addrs))
	for i := range n.addrs {
		out[i] = n.addrs[i] + ": " + n.notes[i]
	}
	return out
}
