package cache

import "sync/atomic"

// Stats are the cache's counters since start: what `spartanctl cache
// --json` prints and /metrics exports as spartan_cache_*.
type Stats struct {
	Entries    int64  `json:"entries"`
	Bytes      int64  `json:"bytes"`
	Hits       uint64 `json:"hits"`
	Misses     uint64 `json:"misses"`
	Stale      uint64 `json:"stale"`
	Prefetches uint64 `json:"prefetches"`
	Coalesced  uint64 `json:"coalesced"`
	Evictions  uint64 `json:"evictions"`
}

// counters are the cache-wide counters of the slower paths. Hits, the one
// count of the hit path, are kept per shard (store.go) so that loops
// answering from different shards never share a cache line.
type counters struct {
	misses, stale, prefetches, coalesced, evictions atomic.Uint64
}

// Count kinds the forwarder reports.
type Count uint8

// What the forwarder counts.
const (
	CountMiss      Count = iota // a query that found no usable entry and went upstream (or waited)
	CountStale                  // a stale answer given
	CountPrefetch               // a background refresh started
	CountCoalesced              // a query that waited for another query's race
)

// Add counts one event of kind k.
func (c *Cache) Add(k Count) {
	switch k {
	case CountMiss:
		c.ctr.misses.Add(1)
	case CountStale:
		c.ctr.stale.Add(1)
	case CountPrefetch:
		c.ctr.prefetches.Add(1)
	case CountCoalesced:
		c.ctr.coalesced.Add(1)
	}
}

// Stats returns the current counts. Entries and bytes are read shard by
// shard, so under load they are a close, not an exact, sum.
func (c *Cache) Stats() Stats {
	s := Stats{
		Misses:     c.ctr.misses.Load(),
		Stale:      c.ctr.stale.Load(),
		Prefetches: c.ctr.prefetches.Load(),
		Coalesced:  c.ctr.coalesced.Load(),
		Evictions:  c.ctr.evictions.Load(),
	}
	for i := range c.shards {
		sh := &c.shards[i]
		s.Hits += sh.hits.Load()
		s.Entries += sh.entries.Load()
		s.Bytes += sh.bytes.Load()
	}
	return s
}
