package cache

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var testCfg = Config{MaxEntries: 1000, MaxTTL: time.Hour, NegativeMaxTTL: 30 * time.Minute, ServeStale: true,
	StaleMaxAge: 24 * time.Hour, StaleAnswerTTL: 30 * time.Second, ClientTimeout: 1800 * time.Millisecond,
	StaleRecheck: 30 * time.Second, Prefetch: true}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// store caches the reply that mod makes of a reply to name's A query, and
// returns the entry and the query.
func store(t *testing.T, c *Cache, name string, mod func(q, r *dns.Msg)) (*Entry, []byte) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(q)
	mod(q, r)
	qb := pack(t, q)
	var kb KeyBuf
	cq, ok := c.ParseQuery(qb, false, &kb)
	if !ok {
		t.Fatal("query does not parse")
	}
	e := c.Store(pack(t, r), &cq, c.Now(), 0)
	if e == nil {
		t.Fatal("reply does not parse")
	}
	return e, qb
}

// Lifetime: the smallest answer/authority TTL capped by max_ttl; negative
// answers by the SOA rule capped by negative_max_ttl; never cached: TTL 0,
// no SOA on a negative answer, TC, SERVFAIL, REFUSED.
func TestLifetime(t *testing.T) {
	soa := "example. 600 IN SOA ns.example. h.example. 1 2 3 4 %d"
	tests := []struct {
		name string
		mod  func(q, r *dns.Msg)
		want time.Duration
	}{
		{"smallest TTL", func(q, r *dns.Msg) {
			r.Answer = []dns.RR{rr(t, "a.example. 300 IN A 10.0.0.1"), rr(t, "a.example. 200 IN A 10.0.0.2")}
			r.Ns = []dns.RR{rr(t, "example. 100 IN NS ns.example.")}
			r.Extra = []dns.RR{rr(t, "ns.example. 5 IN A 10.0.0.3")} // additional: not counted
		}, 100 * time.Second},
		{"max_ttl", func(q, r *dns.Msg) { r.Answer = []dns.RR{rr(t, "a.example. 86400 IN A 10.0.0.1")} }, time.Hour},
		{"TTL 0", func(q, r *dns.Msg) { r.Answer = []dns.RR{rr(t, "a.example. 0 IN A 10.0.0.1")} }, 0},
		{"TTL top bit is 0", func(q, r *dns.Msg) {
			r.Answer = []dns.RR{rr(t, "a.example. 2147483648 IN A 10.0.0.1")}
		}, 0},
		{"NXDOMAIN: SOA MINIMUM", func(q, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{rr(t, sprintf(soa, 60))}
		}, 60 * time.Second},
		{"NXDOMAIN: SOA TTL", func(q, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{rr(t, sprintf(soa, 6000))}
		}, 600 * time.Second},
		{"NXDOMAIN: negative_max_ttl", func(q, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
			s := rr(t, sprintf(soa, 86400))
			s.Header().Ttl = 86400
			r.Ns = []dns.RR{s}
		}, 30 * time.Minute},
		{"NODATA: SOA rule", func(q, r *dns.Msg) { r.Ns = []dns.RR{rr(t, sprintf(soa, 60))} }, 60 * time.Second},
		{"NXDOMAIN without SOA", func(q, r *dns.Msg) { r.Rcode = dns.RcodeNameError }, 0},
		{"NODATA without SOA", func(q, r *dns.Msg) {}, 0},
		{"TC", func(q, r *dns.Msg) {
			r.Truncated = true
			r.Answer = []dns.RR{rr(t, "a.example. 300 IN A 10.0.0.1")}
		}, 0},
		{"SERVFAIL", func(q, r *dns.Msg) {
			r.Rcode = dns.RcodeServerFailure
			r.Ns = []dns.RR{rr(t, sprintf(soa, 60))}
		}, 0},
		{"REFUSED", func(q, r *dns.Msg) { r.Rcode = dns.RcodeRefused }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(testCfg, nil)
			e, _ := store(t, c, "a.example.", tt.mod)
			if got := time.Duration(e.life); got != tt.want {
				t.Errorf("lifetime %v, want %v", got, tt.want)
			}
			if n := c.Stats().Entries; (n == 1) != (tt.want > 0) {
				t.Errorf("%d entries stored for lifetime %v", n, tt.want)
			}
		})
	}
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// A stale answer gets EDE 3 inside the OPT record even when OPT is not the
// last record, and every TTL outside it becomes stale_answer_ttl.
func TestRenderStale(t *testing.T) {
	c := New(testCfg, nil)
	e, qb := store(t, c, "a.example.", func(q, r *dns.Msg) {
		q.SetEdns0(1232, true)
		r.Answer = []dns.RR{rr(t, "a.example. 300 IN A 10.0.0.1")}
		o := new(dns.OPT)
		o.Hdr.Name, o.Hdr.Rrtype = ".", dns.TypeOPT
		o.SetUDPSize(1232)
		o.SetDo()
		o.Option = []dns.EDNS0{&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "aa"}}
		r.Extra = []dns.RR{o, rr(t, "ns.example. 400 IN A 10.0.0.9")} // OPT first, then a record
	})
	var kb KeyBuf
	cq, _ := c.ParseQuery(qb, false, &kb)
	out := make([]byte, 1024)
	n := c.Render(out, e, qb, &cq, c.Now()+int64(time.Hour), true)
	m := new(dns.Msg)
	if err := m.Unpack(out[:n]); err != nil {
		t.Fatalf("stale answer does not parse: %v", err)
	}
	o := m.IsEdns0()
	if o == nil || len(o.Option) != 2 || !o.Do() {
		t.Fatalf("OPT %v: want NSID, EDE and DO kept", o)
	}
	if ede, ok := o.Option[1].(*dns.EDNS0_EDE); !ok || ede.InfoCode != 3 {
		t.Errorf("second option %v, want EDE 3", o.Option[1])
	}
	if m.Answer[0].Header().Ttl != 30 || m.Extra[1].Header().Ttl != 30 {
		t.Errorf("TTLs %d, %d; want 30", m.Answer[0].Header().Ttl, m.Extra[1].Header().Ttl)
	}
}

// Eviction: beyond max_entries, the entries hit least recently go first.
func TestEviction(t *testing.T) {
	now := int64(0)
	cfg := testCfg
	cfg.MaxEntries = 50 // one shard: the sample sees every entry of it
	c := New(cfg, func() int64 { return now })
	var queries [][]byte
	for i := range 50 {
		_, q := store(t, c, sprintf("n%d.example.", i), func(q, r *dns.Msg) {
			r.Answer = []dns.RR{rr(t, q.Question[0].Name+" 3600 IN A 10.0.0.1")}
		})
		queries = append(queries, q)
	}
	now += int64(10 * time.Second)
	var kb KeyBuf
	for _, q := range queries[:45] { // used recently; 45..49 are not
		cq, _ := c.ParseQuery(q, false, &kb)
		if _, st := c.Lookup(&cq, now); st != Fresh {
			t.Fatalf("state %d, want a hit", st)
		}
	}
	for i := range 5 {
		store(t, c, sprintf("new%d.example.", i), func(q, r *dns.Msg) {
			r.Answer = []dns.RR{rr(t, q.Question[0].Name+" 3600 IN A 10.0.0.1")}
		})
	}
	if s := c.Stats(); s.Entries != 50 || s.Evictions != 5 {
		t.Fatalf("%+v: want 50 entries after 5 evictions", s)
	}
	kept := 0
	for _, q := range queries[:45] {
		cq, _ := c.ParseQuery(q, false, &kb)
		if e, _ := c.Lookup(&cq, now); e != nil {
			kept++
		}
	}
	if kept != 45 {
		t.Errorf("%d of 45 recently used entries kept, want all: the 5 unused ones go first", kept)
	}
}

// Queries that bypass the cache: anything but one plain question with at
// most one OPT.
func TestParseQueryBypass(t *testing.T) {
	c := New(testCfg, nil)
	base := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("a.example.", dns.TypeA)
		return m
	}
	tests := []struct {
		name string
		mod  func(m *dns.Msg)
		ok   bool
	}{
		{"plain", func(*dns.Msg) {}, true},
		{"EDNS", func(m *dns.Msg) { m.SetEdns0(1232, false) }, true},
		{"response", func(m *dns.Msg) { m.Response = true }, false},
		{"NOTIFY", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, false},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, false},
		{"answer section", func(m *dns.Msg) { m.Answer = []dns.RR{rr(t, "a.example. 1 IN A 10.0.0.1")} }, false},
		{"non-OPT additional", func(m *dns.Msg) { m.Extra = []dns.RR{rr(t, "a.example. 1 IN A 10.0.0.1")} }, false},
		{"long option", func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_LOCAL{Code: 65001, Data: make([]byte, MaxKey)}}
		}, false},
	}
	for _, tt := range tests {
		m := base()
		tt.mod(m)
		var kb KeyBuf
		if _, ok := c.ParseQuery(pack(t, m), false, &kb); ok != tt.ok {
			t.Errorf("%s: cacheable %v, want %v", tt.name, ok, tt.ok)
		}
	}
	// Limits: 512 without EDNS, the payload size (at least 512) with it,
	// 65535 over TCP.
	for _, tt := range []struct {
		size  uint16
		edns  bool
		tcp   bool
		limit int
	}{{0, false, false, 512}, {1232, true, false, 1232}, {100, true, false, 512}, {1232, true, true, 65535}} {
		m := base()
		if tt.edns {
			m.SetEdns0(tt.size, false)
		}
		var kb KeyBuf
		if cq, _ := c.ParseQuery(pack(t, m), tt.tcp, &kb); cq.Limit != tt.limit {
			t.Errorf("size %d edns %v tcp %v: limit %d, want %d", tt.size, tt.edns, tt.tcp, cq.Limit, tt.limit)
		}
	}
	_ = net.IPv4zero
}

func TestUnder(t *testing.T) {
	w := func(s string) []byte { b, _ := wireName(s); return b }
	tests := []struct {
		name, target string
		want         bool
	}{
		{"a.example.", "example", true},
		{"a.example.", "a.example.", true},
		{"ba.example.", "a.example", false},
		{"example.", "a.example", false},
		{"a.example.", ".", true},
	}
	for _, tt := range tests {
		if got := under(w(tt.name), w(tt.target)); got != tt.want {
			t.Errorf("under(%s, %s) = %v, want %v", tt.name, tt.target, got, tt.want)
		}
	}
	if _, err := wireName("a..b"); err == nil {
		t.Error("a..b accepted")
	}
}
