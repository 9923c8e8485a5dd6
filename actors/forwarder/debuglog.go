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
	out := make([]string, 0, q.natt)
	for k := range q.natt {
		a := &q.att[k]
		note := noteNoReply
		switch {
		case a.rcode == failedFast:
			note = noteFailed
		case a.rcode > 0:
			note = rcodeNote(int(a.rcode) - 1)
		}
		out = append(out, a.score.Upstream().Addr.String()+": "+note)
	}
	return out
}

// raceAttemptNotes describes the attempts of a goroutine race: the results
// that came back, then the upstreams still out.
func raceAttemptNotes(rules *raceRules, settled []attemptResult) []string {
	out := make([]string, 0, rules.launched)
	back := uint64(0)
	for _, r := range settled {
		note := noteFailed
		switch {
		case r.reply != nil:
			note = rcodeNote(rcode(r.reply))
		case r.timedOut:
			note = noteNoReply
		}
		out = append(out, r.u.Addr.String()+": "+note)
		for i, u := range rules.ups {
			if u == r.u {
				back |= 1 << i
			}
		}
	}
	for i, u := range rules.ups {
		if rules.tried&(1<<i) != 0 && back&(1<<i) == 0 {
			out = append(out, u.Addr.String()+": "+noteNoReply)
		}
	}
	return out
}
