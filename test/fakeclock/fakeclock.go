// Package fakeclock is a hand-driven clock for timing tests without
// sleeps: After channels fire only when the test calls Advance, and every
// After call is reported on Scheduled so a test can wait until the code
// under test goes to sleep, and check for how long.
package fakeclock

import (
	"sync"
	"testing"
	"time"
)

// Clock implements actors/clock.Clock: Now and After.
type Clock struct {
	// Scheduled receives the duration of every After call (buffered;
	// dropped if nobody reads it for a long time).
	Scheduled chan time.Duration

	mu     sync.Mutex
	now    time.Time
	timers []timer
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock at 2026-01-01 00:00 UTC.
func New() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Scheduled: make(chan time.Duration, 1000)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once Advance passes d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.timers = append(c.timers, timer{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	select {
	case c.Scheduled <- d:
	default:
	}
	return ch
}

// Advance moves the clock forward and fires every timer now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(c.now) {
			tm.ch <- c.now
			continue
		}
		kept = append(kept, tm)
	}
	c.timers = kept
}

// ExpectAfter waits (up to 5 s of real time) for the next After call and
// fails the test unless it asked for want.
func (c *Clock) ExpectAfter(t testing.TB, want time.Duration) {
	t.Helper()
	select {
	case got := <-c.Scheduled:
		if got != want {
			t.Fatalf("next wake-up scheduled after %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing scheduled its next wake-up (want %v)", want)
	}
}
