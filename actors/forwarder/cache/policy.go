package cache

import "time"

// Config is the cache's part of the configuration file (the "cache"
// object), in the units the cache works in.
type Config struct {
	MaxEntries     int
	MaxTTL         time.Duration
	NegativeMaxTTL time.Duration
	ServeStale     bool
	StaleMaxAge    time.Duration
	StaleAnswerTTL time.Duration
	ClientTimeout  time.Duration
	StaleRecheck   time.Duration
	Prefetch       bool
}

// State is what a lookup found, and so what the query gets.
type State uint8

// Lookup states.
const (
	Miss     State = iota // nothing usable: race (or wait for the race in flight)
	Fresh                 // answer from the cache
	Prefetch              // answer from the cache, and refresh it in the background (one query per entry does)
	Expired               // refresh first; the entry is the stale answer should the refresh fail or be slow
	StaleNow              // a refresh failed less than stale_recheck ago: the stale answer at once
	TooLarge              // fresh, but larger than the client's transport allows: go upstream
)

// prefetchMinLife is the shortest original lifetime that prefetches (SPEC:
// original TTL ≥ 10 s): for shorter ones the last 10 % is under a second.
const prefetchMinLife = 10 * time.Second

// state classifies entry e for a query at now. It counts nothing.
func (c *Cache) state(e *Entry, q *Query, now int64) State {
	if now < e.expires {
		if e.Size() > q.Limit {
			return TooLarge
		}
		if c.cfg.Prefetch && e.life >= int64(prefetchMinLife) && now >= e.expires-e.life/10 &&
			!e.prefetched.Load() && e.prefetched.CompareAndSwap(false, true) {
			return Prefetch
		}
		return Fresh
	}
	if !c.StaleOK(e, now) {
		return Miss
	}
	if now < e.recheck.Load() && e.Size()+EDELen <= q.Limit {
		return StaleNow
	}
	return Expired
}

// StaleOK says whether e may still be given as a stale answer at now
// (serve_stale, and expired less than stale_max_age ago). RFC 8767 4
// measures that age from the expiry, as here.
func (c *Cache) StaleOK(e *Entry, now int64) bool {
	return c.cfg.ServeStale && now < e.expires+int64(c.cfg.StaleMaxAge)
}

// Wait is how long a query for an expired entry waits for its refresh
// before it gets the stale answer: twice the route's current hedge delay,
// at most client_timeout. A healthy upstream answers well within twice the
// hedge delay (it is 4 × the route's p99), so a fresh answer is not traded
// for a stale one without need; a dead route costs tens of milliseconds.
func (c *Cache) Wait(hedge time.Duration) time.Duration {
	return min(2*hedge, c.cfg.ClientTimeout)
}

// RefreshFailed records that the refresh of e failed at now: stale answers
// at once until stale_recheck has passed, then one refresh again.
func (c *Cache) RefreshFailed(e *Entry, now int64) {
	if e != nil {
		e.recheck.Store(now + int64(c.cfg.StaleRecheck))
	}
}

// StaleTTL is the TTL of every record of a stale answer, in seconds.
func (c *Cache) StaleTTL() uint32 { return uint32(c.cfg.StaleAnswerTTL / time.Second) }

// Render writes e's answer for one client query (raw bytes q, parsed cq)
// into dst and returns its length (0: dst too small). A stale answer
// carries EDE 3 when the query has EDNS and the option still fits the
// client's size limit.
func (c *Cache) Render(dst []byte, e *Entry, q []byte, cq *Query, now int64, stale bool) int {
	ede := stale && cq.EDNS && e.Size()+EDELen <= cq.Limit
	return e.Render(dst, q, now, stale, ede, c.StaleTTL())
}
