package cache

import (
	"bytes"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Cache is the store. Lookups read a sync.Map (a hash trie whose reads
// take no lock: loops answering hits never wait for each other, nothing is
// allocated). Writes, eviction and the counters go through shards, each
// with its own mutex, so inserts of different keys rarely meet and an
// entry's map slot and its place in its shard's eviction ring change
// together. Measured against a map per shard behind a mutex and against
// otter in bench/cachecmp (bench/CACHE.md).
type Cache struct {
	cfg    Config
	rules  lifetimeRules
	seed   maphash.Seed
	now    func() int64
	m      sync.Map // string key -> *Entry; written only under the key's shard lock
	shards []shard
	total  atomic.Int64 // entries in all shards: inserts evict beyond max_entries
	ctr    counters
}

// shard is one lock's worth of entries, padded so that two shards' hot
// fields never share a cache line.
type shard struct {
	mu      sync.Mutex
	ring    []*Entry // the shard's entries, for the eviction hand
	hand    int
	hits    atomic.Uint64
	entries atomic.Int64
	bytes   atomic.Int64
	_       [64]byte
}

// New returns a cache for cfg. now is the clock in nanoseconds (any
// monotonic origin); nil is the real monotonic clock.
func New(cfg Config, now func() int64) *Cache {
	if now == nil {
		epoch := time.Now()
		now = func() int64 { return int64(time.Since(epoch)) }
	}
	if cfg.MaxEntries < 1 {
		cfg.MaxEntries = 1
	}
	// Enough shards that loops rarely meet, few enough that each shard of a
	// small cache still holds a decent sample of entries to evict from.
	n := 1
	for n < 128 && n*64 <= cfg.MaxEntries {
		n *= 2
	}
	c := &Cache{
		cfg:   cfg,
		rules: lifetimeRules{maxTTL: seconds(cfg.MaxTTL), negMaxTTL: seconds(cfg.NegativeMaxTTL)},
		seed:  maphash.MakeSeed(),
		now:   now,
	}
	c.shards = make([]shard, n)
	return c
}

func seconds(d time.Duration) uint32 { return uint32(min(d/time.Second, 1<<31-1)) }

// Now is the cache's clock.
func (c *Cache) Now() int64 { return c.now() }

// Config returns the cache's configuration.
func (c *Cache) Config() Config { return c.cfg }

func (c *Cache) shardOf(h uint64) int { return int(h % uint64(len(c.shards))) }

// Lookup finds the entry for q and says what the query gets. It counts a
// hit; a miss is the caller's to count, once it knows the query goes
// upstream (a local name is not a miss). Nothing on this path allocates.
func (c *Cache) Lookup(q *Query, now int64) (*Entry, State) {
	if len(q.Key) == 0 {
		return nil, Miss
	}
	// The key bytes as a string without a copy: Load keeps nothing of it.
	v, ok := c.m.Load(unsafe.String(unsafe.SliceData(q.Key), len(q.Key)))
	if !ok {
		return nil, Miss
	}
	e := v.(*Entry)
	sh := &c.shards[c.shardOf(q.Hash)]
	st := c.state(e, q, now)
	switch st {
	case Fresh, Prefetch:
		sh.hits.Add(1)
		// For eviction (CLOCK); a read first, so that a hot entry's line
		// is not written by every loop on every hit.
		if !e.ref.Load() {
			e.ref.Store(true)
		}
	}
	return e, st
}

// Store caches reply, the upstream's validated answer to q, when the
// SPEC's rules allow it, and returns the entry built from it (also when it
// is not cached, so that waiters can be answered from it); nil when the
// reply does not parse. kind is kept with the entry for the caller.
func (c *Cache) Store(reply []byte, q *Query, now int64, kind int) *Entry {
	e, ok := newEntry(c.rules, reply, q, now, kind)
	if !ok {
		return nil
	}
	if e.life == 0 {
		return e
	}
	c.insert(e, q.Hash, now)
	return e
}

// insert puts e, whose key hashes to h, in the store: in place of the
// entry of the same key, or as a new one, evicting beyond max_entries.
func (c *Cache) insert(e *Entry, h uint64, now int64) {
	sh := &c.shards[c.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v, ok := c.m.Load(e.key); ok {
		old := v.(*Entry)
		sh.bytes.Add(e.footprint() - old.footprint())
		c.m.Store(e.key, e)
		e.slot = old.slot
		sh.ring[e.slot] = e
		return
	}
	// The bound is global (shards fill unevenly), the eviction local: the
	// inserting shard gives up its least useful entry. An insert into an
	// empty shard evicts nothing, so the cache may hold up to one entry per
	// shard beyond max_entries until the next inserts elsewhere.
	if c.total.Add(1) > int64(c.cfg.MaxEntries) && len(sh.ring) > 0 {
		c.evictOne(sh, now)
	}
	c.m.Store(e.key, e)
	e.slot = len(sh.ring)
	sh.ring = append(sh.ring, e)
	sh.entries.Add(1)
	sh.bytes.Add(e.footprint())
}

// evictOne drops the least useful entry of sh, by CLOCK (second chance,
// as an approximation of LRU that costs a hit one atomic read): the hand
// passes over entries hit since its last turn, clearing their mark, and
// takes the first unmarked one; an entry that can no longer be served even
// stale goes first, marked or not. Called with sh.mu held.
func (c *Cache) evictOne(sh *shard, now int64) {
	for range 2*len(sh.ring) + 1 {
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
		e := sh.ring[sh.hand]
		dead := now >= e.expires && !c.StaleOK(e, now)
		if dead || !e.ref.Load() {
			// remove moves the last entry, most likely the newest, into
			// this slot: the hand steps past it, so a new entry gets a
			// whole turn to be hit.
			c.remove(sh, e)
			c.ctr.evictions.Add(1)
			sh.hand++
			return
		}
		e.ref.Store(false)
		sh.hand++
	}
}

func (c *Cache) remove(sh *shard, e *Entry) {
	c.m.Delete(e.key)
	last := sh.ring[len(sh.ring)-1]
	sh.ring[e.slot] = last
	last.slot = e.slot
	sh.ring[len(sh.ring)-1] = nil
	sh.ring = sh.ring[:len(sh.ring)-1]
	c.total.Add(-1)
	sh.entries.Add(-1)
	sh.bytes.Add(-e.footprint())
}

// ErrBadName is returned by Flush for a name that is not a domain name.
var ErrBadName = errors.New("not a domain name")

// Flush removes every entry (name "") or the entries for name and every
// name under it, and returns how many went.
func (c *Cache) Flush(name string) (int, error) {
	var target []byte
	if name != "" {
		var err error
		if target, err = wireName(name); err != nil {
			return 0, err
		}
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for i := 0; i < len(sh.ring); {
			// remove moves the last entry into slot i: look at i again.
			if e := sh.ring[i]; target == nil || under(keyName([]byte(e.key)), target) {
				c.remove(sh, e)
				n++
				continue
			}
			i++
		}
		sh.hand = 0
		sh.mu.Unlock()
	}
	return n, nil
}

// under says whether the wire-form name is target or below it (both lower
// case).
func under(name, target []byte) bool {
	for off := 0; off < len(name); off += 1 + int(name[off]) {
		if len(name)-off == len(target) {
			return bytes.Equal(name[off:], target)
		}
		if name[off] == 0 {
			break
		}
	}
	return false
}

// wireName converts a presentation-form name ("Example.COM", trailing dot
// optional, "." the root) to lower-case wire form.
func wireName(s string) ([]byte, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" {
		return []byte{0}, nil
	}
	out := make([]byte, 0, len(s)+2)
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return nil, ErrBadName
		}
		out = append(out, byte(len(l)))
		out = append(out, l...)
	}
	out = append(out, 0)
	if len(out) > 255 {
		return nil, ErrBadName
	}
	return out, nil
}
