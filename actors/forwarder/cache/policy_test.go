package cache

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// What a query gets, at the exact edges of each rule (SPEC "Cache": fresh
// until the TTL is over, prefetch in its last 10 % for TTLs of 10 s or
// more, too large past the client's limit, stale for stale_max_age after
// expiry, stale at once for stale_recheck after a failed refresh).
func TestStateAtTheEdges(t *testing.T) {
	const s = int64(time.Second)
	var now int64 = 1e12
	c := New(testCfg, func() int64 { return now })
	t0 := now
	entry := func(name string, ttl int) (*Entry, Query) {
		e, q := store(t, c, name, func(_, r *dns.Msg) { r.Answer = []dns.RR{rr(t, name+" "+itoa(ttl)+" IN A 10.0.0.1")} })
		var kb KeyBuf
		cq, _ := c.ParseQuery(q, false, &kb)
		cq.Key = append([]byte(nil), cq.Key...)
		return e, cq
	}
	e100, q100 := entry("hundred.example.", 100)
	e10, q10 := entry("ten.example.", 10)
	e9, q9 := entry("nine.example.", 9)
	stale := t0 + 100*s + int64(testCfg.StaleMaxAge)
	tests := []struct {
		name string
		q    Query
		e    *Entry
		at   int64
		want State
	}{
		{"fresh just before the prefetch window", q100, e100, t0 + 90*s - 1, Fresh},
		{"prefetch from the window's first instant", q100, e100, t0 + 90*s, Prefetch},
		{"TTL 10 s prefetches", q10, e10, t0 + 9*s, Prefetch},
		{"TTL 9 s never prefetches", q9, e9, t0 + 9*s - 1, Fresh},
		{"fresh until the last instant", q9, e9, t0 + 9*s - 1, Fresh},
		{"expired at the TTL's end", q9, e9, t0 + 9*s, Expired},
		{"stale until stale_max_age", q100, e100, stale - 1, Expired},
		{"gone at stale_max_age", q100, e100, stale, Miss},
	}
	for _, tt := range tests {
		if got := c.state(tt.e, &tt.q, tt.at); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// Prefetch is once per entry: the window's next query is fresh.
	if got := c.state(e10, &q10, t0+9*s+1); got != Fresh {
		t.Errorf("second query in the prefetch window: %v, want fresh", got)
	}

	// Size against the client's limit: equal fits; EDE 3 of a stale answer
	// must fit too, or the stale answer waits for the refresh.
	size := e100.Size()
	q := q100
	q.Limit = size
	if got := c.state(e100, &q, t0); got != Fresh {
		t.Errorf("entry of exactly the limit: %v, want fresh", got)
	}
	q.Limit = size - 1
	if got := c.state(e100, &q, t0); got != TooLarge {
		t.Errorf("entry over the limit: %v, want too large", got)
	}
	failed := t0 + 101*s
	c.RefreshFailed(e100, failed)
	q.Limit = size + EDELen
	if got := c.state(e100, &q, failed+int64(testCfg.StaleRecheck)-1); got != StaleNow {
		t.Errorf("within stale_recheck, EDE fits exactly: %v, want stale at once", got)
	}
	if got := c.state(e100, &q, failed+int64(testCfg.StaleRecheck)); got != Expired {
		t.Errorf("at stale_recheck's end: %v, want expired (refresh again)", got)
	}
	q.Limit = size + EDELen - 1
	if got := c.state(e100, &q, failed+1); got != Expired {
		t.Errorf("within stale_recheck, EDE does not fit: %v, want expired", got)
	}
}

// Flush gives its entries' room back: the count that bounds max_entries
// and the byte count both drop, so later inserts evict nothing until the
// cache is full again; a flush of one name leaves the others.
func TestFlushFreesRoom(t *testing.T) {
	cfg := testCfg
	cfg.MaxEntries = 20
	c := New(cfg, nil)
	fill := func(prefix string, n int) {
		for i := range n {
			name := prefix + itoa(i) + ".example."
			store(t, c, name, func(_, r *dns.Msg) { r.Answer = []dns.RR{rr(t, name+" 300 IN A 10.0.0.1")} })
		}
	}
	fill("a", 20)
	if n, err := c.Flush("a3.example."); err != nil || n != 1 {
		t.Fatalf("Flush(a3.example.): %d, %v", n, err)
	}
	if n, err := c.Flush(""); err != nil || n != 19 {
		t.Fatalf("Flush(): %d, %v; want the other 19", n, err)
	}
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("after a flush: %d entries, %d bytes; want 0, 0", s.Entries, s.Bytes)
	}
	fill("b", 20)
	if s := c.Stats(); s.Entries != 20 || s.Evictions != 0 {
		t.Errorf("20 inserts after the flush: %d entries, %d evictions; want 20, 0", s.Entries, s.Evictions)
	}
}
