// Package cache is Spartan's answer cache (SPEC "Cache"): upstream replies
// kept as raw bytes and served with only the ID, the question name's
// letter case and the TTLs rewritten (and, on a stale answer, an Extended
// DNS Error option appended), so an answer from the cache is the upstream's
// answer byte for byte in every other respect (RFC 5625).
//
// One job per file:
//
//   - key.go: which queries share an entry (the cache key), parsed from the
//     raw query without allocating;
//   - entry.go: what is cached and for how long (RFC 2308 for negative
//     answers), and rendering an entry for one client (TTL rewriting, EDE);
//   - store.go: the sharded store, eviction of the least useful entries,
//     flush;
//   - policy.go: fresh, prefetch, refresh, stale (RFC 8767) decisions, on an
//     injected clock;
//   - stats.go: the counters behind `spartanctl cache` and /metrics.
//
// The package does no I/O: the forwarder decides when to race upstreams and
// who waits for whom (actors/forwarder/flight.go).
package cache
