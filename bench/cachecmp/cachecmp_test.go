// Package cachecmp measures Spartan's answer cache store (lock-free
// sync.Map reads, sharded writes, CLOCK eviction) against otter v2, the
// well-kept Go cache library, and a bare sync.Map, on the hit path: the
// key is built from the query by the same ParseQuery, then looked up.
// Results and the choice: bench/CACHE.md.
//
//	cd bench/cachecmp && go test -run '^$' -bench . -benchmem
package cachecmp

import (
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
)

const names = 1024

type fixture struct {
	syncm   sync.Map
	own     *cache.Cache
	otter   *otter.Cache[string, *cache.Entry]
	queries [][]byte
}

func setup(b *testing.B) *fixture {
	f := &fixture{own: cache.New(cache.Config{MaxEntries: 100000, MaxTTL: time.Hour, NegativeMaxTTL: time.Hour}, nil)}
	f.otter = otter.Must(&otter.Options[string, *cache.Entry]{MaximumSize: 100000})
	for i := range names {
		name := fmt.Sprintf("host-%d.bench.example.", i)
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, false)
		qb, _ := q.Pack()
		r := new(dns.Msg)
		r.SetReply(q)
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: []byte{10, 0, 0, 1}}}
		r.SetEdns0(1232, false)
		rb, _ := r.Pack()
		var kb cache.KeyBuf
		cq, _ := f.own.ParseQuery(qb, false, &kb)
		e := f.own.Store(rb, &cq, f.own.Now(), 0)
		f.otter.Set(string(cq.Key), e)
		f.syncm.Store(string(cq.Key), e)
		f.queries = append(f.queries, qb)
	}
	return f
}

func BenchmarkLookup(b *testing.B) {
	f := setup(b)
	own := func(kb *cache.KeyBuf, q []byte) bool {
		cq, _ := f.own.ParseQuery(q, false, kb)
		e, _ := f.own.Lookup(&cq, f.own.Now())
		return e != nil
	}
	ott := func(kb *cache.KeyBuf, q []byte) bool {
		cq, _ := f.own.ParseQuery(q, false, kb)
		_ = f.own.Now() // the hit path needs the clock either way (TTLs)
		// unsafe.String: otter keys are strings, and string(key) would
		// allocate on every hit; the key is not kept by a lookup.
		_, ok := f.otter.GetIfPresent(unsafe.String(&cq.Key[0], len(cq.Key)))
		return ok
	}
	syncm := func(kb *cache.KeyBuf, q []byte) bool {
		cq, _ := f.own.ParseQuery(q, false, kb)
		_ = f.own.Now()
		_, ok := f.syncm.Load(unsafe.String(&cq.Key[0], len(cq.Key)))
		return ok
	}
	for _, impl := range []struct {
		name string
		get  func(*cache.KeyBuf, []byte) bool
	}{{"own", own}, {"otter", ott}, {"syncmap", syncm}} {
		b.Run(impl.name+"/serial", func(b *testing.B) {
			var kb cache.KeyBuf
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !impl.get(&kb, f.queries[i%names]) {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(impl.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var kb cache.KeyBuf
				for i := 0; pb.Next(); i++ {
					if !impl.get(&kb, f.queries[i%names]) {
						b.Fatal("miss")
					}
				}
			})
		})
	}
}
