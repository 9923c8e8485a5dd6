package cache

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A dump loaded by another cache (another clock origin, as in a new
// process) serves every entry as the old one would: fresh ones with their
// TTLs aged by the time spent in the old cache, expired ones stale, and
// nothing that was past stale_max_age.
func TestDumpLoad(t *testing.T) {
	a := func(name string, ttl int) func(q, r *dns.Msg) {
		return func(q, r *dns.Msg) {
			r.Answer = []dns.RR{rr(t, name+" "+itoa(ttl)+" IN A 10.0.0.1")}
		}
	}
	var buf bytes.Buffer
	var now0 int64 = 5e12
	old := New(testCfg, func() int64 { return now0 })
	_, fresh := store(t, old, "fresh.example.", a("fresh.example.", 300))
	_, stale := store(t, old, "stale.example.", a("stale.example.", 10))
	_, dead := store(t, old, "dead.example.", a("dead.example.", 5))
	_, neg := store(t, old, "nx.example.", func(q, r *dns.Msg) {
		r.Rcode = dns.RcodeNameError
		r.Ns = []dns.RR{rr(t, "example. 600 IN SOA ns.example. h.example. 1 2 3 4 120")}
	})
	dumpAt := now0 + 20*int64(time.Second)
	old.cfg.StaleMaxAge = 12 * time.Second // dead: expired 15 s ago, too long; stale: 10 s ago, fine
	if n, err := old.Dump(&buf, dumpAt, "routes-1"); err != nil || n != 3 {
		t.Fatalf("Dump: %d entries, %v; want 3", n, err)
	}
	dump := buf.Bytes()

	var newNow int64 = 7 // another origin
	c := New(testCfg, func() int64 { return newNow })
	if n, err := c.Load(bytes.NewReader(dump), newNow, "routes-1", testKinds); err != nil || n != 3 {
		t.Fatalf("Load: %d entries, %v; want 3", n, err)
	}
	tests := []struct {
		q     []byte
		state State
		ttl   uint32 // of the first record, as rendered
	}{
		{fresh, Fresh, 280},
		{stale, Expired, uint32(testCfg.StaleAnswerTTL / time.Second)},
		{neg, Fresh, 580}, // the SOA record's own TTL, aged; the entry lives 120 s (MINIMUM)
		{dead, Miss, 0},
	}
	for _, tt := range tests {
		var kb KeyBuf
		cq, _ := c.ParseQuery(tt.q, false, &kb)
		e, st := c.Lookup(&cq, newNow)
		if st != tt.state {
			t.Errorf("%x: state %v, want %v", tt.q[12:20], st, tt.state)
			continue
		}
		if e == nil {
			continue
		}
		out := make([]byte, 1024)
		m := new(dns.Msg)
		if err := m.Unpack(out[:c.Render(out, e, tt.q, &cq, newNow, st == Expired)]); err != nil {
			t.Fatal(err)
		}
		rrs := append(m.Answer, m.Ns...)
		if got := rrs[0].Header().Ttl; got != tt.ttl {
			t.Errorf("%s: TTL %d, want %d", m.Question[0].Name, got, tt.ttl)
		}
	}
	// The loaded entries expire when they would have in the old cache.
	var kb KeyBuf
	cq, _ := c.ParseQuery(neg, false, &kb)
	if _, st := c.Lookup(&cq, newNow+80*int64(time.Second)); st != Fresh {
		t.Errorf("NXDOMAIN entry 100 s after it was stored: %v, want fresh (120 s)", st)
	}
	if _, st := c.Lookup(&cq, newNow+101*int64(time.Second)); st != Expired {
		t.Errorf("NXDOMAIN entry 121 s after it was stored: %v, want expired (120 s)", st)
	}
}

// A dump is refused whole when it cannot be trusted to mean the same: other
// routing, another key format, not a dump. A truncated one keeps what was
// read whole.
func TestLoadRefuses(t *testing.T) {
	old := New(testCfg, nil)
	for _, name := range []string{"a.example.", "b.example."} {
		store(t, old, name, func(q, r *dns.Msg) { r.Answer = []dns.RR{rr(t, name+" 300 IN A 10.0.0.1")} })
	}
	var buf bytes.Buffer
	if _, err := old.Dump(&buf, old.Now(), "routes-1"); err != nil {
		t.Fatal(err)
	}
	dump := buf.Bytes()
	otherFormat := append([]byte(nil), dump...)
	otherFormat[len(dumpMagic)]++
	tests := []struct {
		name string
		data []byte
		tag  string
		want int
		err  bool
	}{
		{"other routing", dump, "routes-2", 0, true},
		{"other key format", otherFormat, "routes-1", 0, true},
		{"not a dump", []byte("hello, world\n\x01\x00"), "routes-1", 0, true},
		{"empty", nil, "routes-1", 0, true},
		{"cut in the second entry", dump[:len(dump)-3], "routes-1", 1, true},
		{"whole", dump, "routes-1", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(testCfg, nil)
			n, err := c.Load(bytes.NewReader(tt.data), c.Now(), tt.tag, testKinds)
			if n != tt.want || (err != nil) != tt.err {
				t.Errorf("Load: %d entries, %v; want %d, error %v", n, err, tt.want, tt.err)
			}
			if got := c.Stats().Entries; got != int64(tt.want) {
				t.Errorf("%d entries in the cache, want %d", got, tt.want)
			}
		})
	}
	// An entry of a route kind the caller does not have is skipped (its
	// counters are indexed by kind).
	c := New(testCfg, nil)
	if n, err := c.Load(bytes.NewReader(dump), c.Now(), "routes-1", 0); n != 0 || err != nil {
		t.Errorf("entries of an unknown route kind: %d loaded (%v), want 0", n, err)
	}
	if _, err := c.Load(bytes.NewReader(dump), c.Now(), "routes-2", testKinds); !errors.Is(err, ErrOtherRouting) {
		t.Errorf("other routing: %v, want ErrOtherRouting", err)
	}
}

// testKinds is the route kinds a test cache's caller has.
const testKinds = 5

func itoa(n int) string { return sprintf("%d", n) }

// Whatever the pipe carries, Load neither panics nor caches what a
// store would refuse: every entry it loads renders as a reply.
func FuzzLoad(f *testing.F) {
	old := New(testCfg, nil)
	q := new(dns.Msg)
	q.SetQuestion("a.example.", dns.TypeA)
	q.SetEdns0(1232, true)
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}}}
	qb, _ := q.Pack()
	rb, _ := r.Pack()
	var kb KeyBuf
	cq, _ := old.ParseQuery(qb, false, &kb)
	old.Store(rb, &cq, old.Now(), 1)
	var buf bytes.Buffer
	if _, err := old.Dump(&buf, old.Now(), "t"); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:len(buf.Bytes())-5])
	f.Fuzz(func(t *testing.T, data []byte) {
		c := New(testCfg, nil)
		n, _ := c.Load(bytes.NewReader(data), c.Now(), "t", testKinds)
		if got := c.Stats().Entries; got != int64(n) {
			t.Fatalf("Load says %d entries, the cache holds %d", n, got)
		}
		out := make([]byte, 65535+EDELen)
		for i := range c.shards {
			for _, e := range c.snapshot(i) {
				if e.Kind() >= testKinds {
					t.Fatalf("loaded an entry of route kind %d", e.Kind())
				}
				if c.Render(out, e, qb, &cq, c.Now(), false) == 0 && e.Size() <= len(out) {
					t.Fatalf("a loaded entry of %d bytes does not render", e.Size())
				}
			}
		}
	})
}

// The loading process applies its own stale rules: an entry the old process
// could still serve stale is dropped when the new config would not serve it
// (a shorter stale_max_age, or serve_stale off), and an entry dumped the
// instant it was stored (age 0) is as good as any.
func TestLoadAppliesItsOwnRules(t *testing.T) {
	var now int64 = 1e12
	old := New(testCfg, func() int64 { return now })
	_, fresh := store(t, old, "new.example.", func(q, r *dns.Msg) { r.Answer = []dns.RR{rr(t, "new.example. 300 IN A 10.0.0.1")} })
	var buf bytes.Buffer
	if n, err := old.Dump(&buf, now, "r"); err != nil || n != 1 {
		t.Fatalf("Dump at age 0: %d, %v", n, err)
	}
	c := New(testCfg, nil)
	if n, err := c.Load(bytes.NewReader(buf.Bytes()), c.Now(), "r", testKinds); err != nil || n != 1 {
		t.Errorf("an entry of age 0: %d loaded (%v), want 1", n, err)
	}

	store(t, old, "old.example.", func(q, r *dns.Msg) { r.Answer = []dns.RR{rr(t, "old.example. 10 IN A 10.0.0.1")} })
	now += 25 * int64(time.Second) // old.example. expired 15 s ago: stale for the old config (24 h)
	buf.Reset()
	if n, err := old.Dump(&buf, now, "r"); err != nil || n != 2 {
		t.Fatalf("Dump: %d, %v; want 2", n, err)
	}
	dump := buf.Bytes()
	shorter := testCfg
	shorter.StaleMaxAge = 12 * time.Second
	noStale := testCfg
	noStale.ServeStale = false
	for name, cfg := range map[string]Config{"stale_max_age 12s": shorter, "serve_stale off": noStale} {
		c := New(cfg, nil)
		if n, err := c.Load(bytes.NewReader(dump), c.Now(), "r", testKinds); err != nil || n != 1 {
			t.Errorf("%s: %d loaded (%v), want 1 (only the fresh entry)", name, n, err)
		}
		var kb KeyBuf
		cq, _ := c.ParseQuery(fresh, false, &kb)
		if _, st := c.Lookup(&cq, c.Now()); st != Fresh {
			t.Errorf("%s: the fresh entry is %v", name, st)
		}
	}
	// At the very instant of expiry, with serve_stale off, an entry is gone.
	buf.Reset()
	now = 1e12 + 300*int64(time.Second) // new.example.'s expiry
	if _, err := old.Dump(&buf, now, "r"); err != nil {
		t.Fatal(err)
	}
	c = New(noStale, nil)
	if n, _ := c.Load(bytes.NewReader(buf.Bytes()), c.Now(), "r", testKinds); n != 0 {
		t.Errorf("serve_stale off: %d entries loaded at their expiry, want 0", n)
	}
}
