package cache

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkHit is the cache's share of a UDP hit: parse the query into its
// key, look it up, render the answer with the client's ID, case and TTLs.
// It must not allocate. parallel runs one goroutine per P on distinct
// names (loops answering different clients), serial one name.
//
//	go test -run '^$' -bench Hit -benchmem ./actors/forwarder/cache
func BenchmarkHit(b *testing.B) {
	c := New(Config{MaxEntries: 100000, MaxTTL: time.Hour, NegativeMaxTTL: time.Hour}, nil)
	const names = 1024
	queries := make([][]byte, names)
	for i := range names {
		queries[i] = benchFill(b, c, fmt.Sprintf("host-%d.bench.example.", i))
	}
	b.Run("serial", func(b *testing.B) {
		var kb KeyBuf
		out := make([]byte, 65535+EDELen)
		q := queries[0]
		b.ReportAllocs()
		for b.Loop() {
			benchHit(b, c, q, &kb, out)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		// Each goroutine's scratch is made before the timer starts, as a
		// loop's is made once: allocs/op are the hit path's alone.
		bufs := make(chan []byte, runtime.GOMAXPROCS(0))
		for range cap(bufs) {
			bufs <- make([]byte, 65535+EDELen)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			kb := new(KeyBuf)
			out := <-bufs
			for i := 0; pb.Next(); i++ {
				benchHit(b, c, queries[i%names], kb, out)
			}
		})
	})
}

func benchHit(b *testing.B, c *Cache, q []byte, kb *KeyBuf, out []byte) {
	cq, ok := c.ParseQuery(q, false, kb)
	if !ok {
		b.Fatal("query does not parse")
	}
	now := c.Now()
	e, st := c.Lookup(&cq, now)
	if st != Fresh {
		b.Fatalf("state %d, want a hit", st)
	}
	if c.Render(out, e, q, &cq, now, false) == 0 {
		b.Fatal("render")
	}
}

// benchFill caches a typical answer for name (an A record and an OPT, to a
// query with EDNS) and returns the query.
func benchFill(tb testing.TB, c *Cache, name string) []byte {
	tb.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	q.SetEdns0(1232, false)
	qb, _ := q.Pack()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: []byte{10, 0, 0, 1}}}
	r.SetEdns0(1232, false)
	rb, _ := r.Pack()
	var kb KeyBuf
	cq, ok := c.ParseQuery(qb, false, &kb)
	if !ok || c.Store(rb, &cq, c.Now(), 0) == nil {
		tb.Fatalf("cannot cache %s", name)
	}
	return qb
}

// BenchmarkMemory fills a cache with 10,000 and 100,000 typical entries (a
// query with EDNS, an A answer and an OPT: about 60-byte replies) and
// reports what they cost: Go heap per entry and the process's RSS growth.
// One op is one whole fill.
//
//	go test -run '^$' -bench Memory -benchtime 1x ./actors/forwarder/cache
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				rss0 := rss(b)
				c := New(Config{MaxEntries: n, MaxTTL: time.Hour, NegativeMaxTTL: time.Hour}, nil)
				for i := range n {
					benchFill(b, c, fmt.Sprintf("host-%d.bench.example.", i))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if s := c.Stats(); s.Entries != int64(n) {
					b.Fatalf("%d entries, want %d", s.Entries, n)
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/entry")
				b.ReportMetric(float64(rss(b)-rss0)/(1<<20), "rss-MiB")
				b.ReportMetric(float64(c.Stats().Bytes)/float64(n), "counted-B/entry")
				runtime.KeepAlive(c)
			}
		})
	}
}

// rss is the process's resident set in bytes.
func rss(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Fatal(err)
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		tb.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}

// BenchmarkHandover is what a reload spends on the cache: the old process
// dumps a full default-size cache (10000 entries) and the new one loads it,
// before it serves.
//
//	go test -run '^$' -bench Handover -benchmem ./actors/forwarder/cache
func BenchmarkHandover(b *testing.B) {
	const n = 10000
	old := New(Config{MaxEntries: n, MaxTTL: time.Hour, NegativeMaxTTL: time.Hour, ServeStale: true, StaleMaxAge: time.Hour}, nil)
	for i := range n {
		benchFill(b, old, fmt.Sprintf("host-%d.bench.example.", i))
	}
	var buf bytes.Buffer
	size := 0
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if k, err := old.Dump(&buf, old.Now(), "t"); err != nil || k != n {
			b.Fatalf("dumped %d, %v", k, err)
		}
		size = buf.Len()
		c := New(old.Config(), nil)
		if k, err := c.Load(&buf, c.Now(), "t", 1); err != nil || k != n {
			b.Fatalf("loaded %d, %v", k, err)
		}
	}
	b.ReportMetric(float64(size)/1024, "dump-KiB")
}
