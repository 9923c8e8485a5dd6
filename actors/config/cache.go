package config

import (
	"fmt"
	"time"
)

// CacheConfig is the "cache" object (SPEC "Cache").
type CacheConfig struct {
	Enabled        bool          // enabled
	MaxEntries     int           // max_entries
	MaxTTL         time.Duration // max_ttl: cap on a positive entry's lifetime
	NegativeMaxTTL time.Duration // negative_max_ttl: cap on an NXDOMAIN/NODATA entry's lifetime
	ServeStale     bool          // serve_stale (RFC 8767)
	StaleMaxAge    time.Duration // stale_max_age: how long after expiry an entry may be served stale
	StaleAnswerTTL time.Duration // stale_answer_ttl: TTL of every record of a stale answer
	ClientTimeout  time.Duration // client_timeout: cap on the wait for a refresh before the stale answer
	StaleRecheck   time.Duration // stale_recheck: after a failed refresh, stale at once this long
	Prefetch       bool          // prefetch
}

// DefaultCache is the cache configuration when the file does not set one.
func DefaultCache() CacheConfig {
	return CacheConfig{
		Enabled:        true,
		MaxEntries:     10000,
		MaxTTL:         time.Hour,
		NegativeMaxTTL: 30 * time.Minute,
		ServeStale:     true,
		StaleMaxAge:    24 * time.Hour,
		StaleAnswerTTL: 30 * time.Second,
		ClientTimeout:  1800 * time.Millisecond,
		StaleRecheck:   30 * time.Second,
		Prefetch:       true,
	}
}

// maxCacheEntries bounds max_entries: beyond it a typo (an extra zero or
// three) would let the cache take the node's memory.
const maxCacheEntries = 10_000_000

// parseCache is the keyFunc of "cache".
func parseCache(p *parser, k string, v any) error {
	sec := func(field func(*Config) *time.Duration) keyFunc {
		return wholeSeconds(durationKey(field), field)
	}
	return parseObject(k, v, map[string]keyFunc{
		"enabled":          boolKey(func(c *Config) *bool { return &c.Cache.Enabled }),
		"max_entries":      intKey(func(c *Config) *int { return &c.Cache.MaxEntries }, 1, maxCacheEntries),
		"max_ttl":          sec(func(c *Config) *time.Duration { return &c.Cache.MaxTTL }),
		"negative_max_ttl": sec(func(c *Config) *time.Duration { return &c.Cache.NegativeMaxTTL }),
		"serve_stale":      boolKey(func(c *Config) *bool { return &c.Cache.ServeStale }),
		"stale_max_age":    durationKey(func(c *Config) *time.Duration { return &c.Cache.StaleMaxAge }),
		"stale_answer_ttl": sec(func(c *Config) *time.Duration { return &c.Cache.StaleAnswerTTL }),
		"client_timeout":   durationKey(func(c *Config) *time.Duration { return &c.Cache.ClientTimeout }),
		"stale_recheck":    durationKey(func(c *Config) *time.Duration { return &c.Cache.StaleRecheck }),
		"prefetch":         boolKey(func(c *Config) *bool { return &c.Cache.Prefetch }),
	}, p)
}

// wholeSeconds wraps a duration key whose value becomes a DNS TTL: it must
// be a whole number of seconds, at most the largest TTL (2^31-1 s, RFC 2181 8).
func wholeSeconds(parse keyFunc, field func(*Config) *time.Duration) keyFunc {
	return func(p *parser, k string, v any) error {
		if err := parse(p, k, v); err != nil {
			return err
		}
		d := *field(p.cfg)
		if d%time.Second != 0 {
			return fmt.Errorf("%s is not a whole number of seconds (it becomes a DNS TTL)", d)
		}
		if d > (1<<31-1)*time.Second {
			return fmt.Errorf("%s is longer than the largest DNS TTL (2147483647s)", d)
		}
		return nil
	}
}
