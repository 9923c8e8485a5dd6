// Package clock is the one way time reaches timing logic that tests drive:
// the masters watchers' poll schedule, the watchdog's grace period, the
// config actor's health tick, the tree's uptimes. Production code passes
// Real; tests pass test/fakeclock, which fires After channels only when the
// test advances it, so no test sleeps to synchronise.
//
// It is not an actor: it sits under actors/ because every actor that
// keeps time takes one.
package clock

import "time"

// Clock is a source of the current time and of timers.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
