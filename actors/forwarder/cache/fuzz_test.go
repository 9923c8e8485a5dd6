package cache

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fuzz targets for the two places the cache reads bytes a client or an
// upstream chose: the key of a query and the TTL walk and rewrite of a
// reply. Seeds live in testdata/fuzz/<target>/; `go test` runs them,
// `test/fuzz.sh` explores.

// FuzzParseQuery: any packet either bypasses the cache or yields a key
// within bounds that ignores the name's case, the ID and a COOKIE.
func FuzzParseQuery(f *testing.F) {
	for _, s := range fuzzQueries(f) {
		f.Add(s, false)
	}
	c := New(testCfg, nil)
	f.Fuzz(func(t *testing.T, q []byte, tcp bool) {
		orig := bytes.Clone(q)
		var kb, kb2 KeyBuf
		cq, ok := c.ParseQuery(q, tcp, &kb)
		if !bytes.Equal(q, orig) {
			t.Fatal("ParseQuery modified the query")
		}
		if !ok {
			return
		}
		if len(cq.Key) > MaxKey || cq.NameEnd > len(q) || cq.NameEnd <= headerLen || cq.Limit < 512 || cq.Limit > 65535 {
			t.Fatalf("key %d bytes, name end %d of %d, limit %d", len(cq.Key), cq.NameEnd, len(q), cq.Limit)
		}
		// Another ID and the name in upper case: the same key.
		v := bytes.Clone(q)
		v[0], v[1] = ^v[0], ^v[1]
		for i := headerLen; i < cq.NameEnd; i++ {
			if 'a' <= v[i] && v[i] <= 'z' {
				v[i] -= 'a' - 'A'
			}
		}
		cv, ok := c.ParseQuery(v, tcp, &kb2)
		if !ok || !bytes.Equal(cv.Key, cq.Key) || cv.Hash != cq.Hash {
			t.Fatalf("upper-cased query: ok %v, key %x, want %x", ok, cv.Key, cq.Key)
		}
		// The key's name is the question's, lower-cased.
		lower := bytes.Clone(q[headerLen:cq.NameEnd])
		for i, ch := range lower {
			if 'A' <= ch && ch <= 'Z' {
				lower[i] = ch + 'a' - 'A'
			}
		}
		if !bytes.Equal(keyName(cq.Key), lower) {
			t.Fatalf("key name %x, question %x", keyName(cq.Key), q[headerLen:cq.NameEnd])
		}
	})
}

// FuzzStoreRender: an arbitrary reply to a fixed query (its header and
// question forced to be a reply, as the forwarder's validation ensures)
// is cached or not without panicking, and a rendered answer is the reply
// with only the ID, question case, TTLs and (stale) EDE changed.
func FuzzStoreRender(f *testing.F) {
	for _, s := range fuzzReplies(f) {
		f.Add(s, uint16(7), false)
	}
	q := new(dns.Msg)
	q.SetQuestion("Fuzz.Example.", dns.TypeA)
	q.SetEdns0(1232, false)
	qb, _ := q.Pack()
	f.Fuzz(func(t *testing.T, body []byte, age uint16, stale bool) {
		now := int64(0)
		c := New(testCfg, func() int64 { return now })
		var kb KeyBuf
		cq, _ := c.ParseQuery(qb, false, &kb)
		// The reply: 12 header bytes and everything after the question from
		// the fuzzer, the query's question in between.
		if len(body) < headerLen {
			return
		}
		reply := append(append(append([]byte(nil), body[:headerLen]...), qb[headerLen:cq.NameEnd+4]...), body[headerLen:]...)
		if len(reply) > 65535 {
			return
		}
		reply[2] |= 0x80
		binary.BigEndian.PutUint16(reply[4:], 1)
		orig := bytes.Clone(reply)
		e := c.Store(reply, &cq, now, 0)
		if !bytes.Equal(reply, orig) {
			t.Fatal("Store modified the reply")
		}
		if e == nil {
			return
		}
		now += int64(age) * int64(time.Second)
		client := bytes.Clone(qb)
		client[0], client[1] = 0xab, 0xcd
		copy(client[headerLen:], []byte{4, 'f', 'U', 'z', 'Z'})
		out := make([]byte, 65535+EDELen)
		n := c.Render(out, e, client, &cq, now, stale)
		if n != e.Size() && n != e.Size()+EDELen {
			t.Fatalf("rendered %d bytes of a %d-byte entry", n, e.Size())
		}
		got := out[:n]
		if !bytes.Equal(got[:2], client[:2]) || !bytes.Equal(got[headerLen:cq.NameEnd], client[headerLen:cq.NameEnd]) {
			t.Fatalf("ID or question not the client's: %x", got[:cq.NameEnd])
		}
		var before, after dns.Msg
		if before.Unpack(orig) != nil {
			return
		}
		if err := after.Unpack(got); err != nil {
			if pointsIntoTTL(orig, e.ttls) {
				return // a name made of TTL bytes changes with them: garbage in, garbage out, no crash
			}
			t.Fatalf("the reply parses, its rendering does not: %v\n%x\n%x", err, orig, got)
		}
		rrs := func(m *dns.Msg) []dns.RR {
			return append(append(append([]dns.RR(nil), m.Answer...), m.Ns...), m.Extra...)
		}
		b, a := rrs(&before), rrs(&after)
		if len(a) != len(b) || before.Rcode != after.Rcode {
			t.Fatalf("records %d -> %d, rcode %d -> %d", len(b), len(a), before.Rcode, after.Rcode)
		}
		for i := range b {
			if b[i].Header().Rrtype == dns.TypeOPT {
				continue
			}
			want := b[i].Header().Ttl
			switch {
			case stale:
				want = 30
			case want > 1<<31-1:
				want = 0
			default:
				want -= min(want, uint32(age))
			}
			if a[i].Header().Ttl != want {
				t.Fatalf("record %d: TTL %d, want %d (age %d, stale %v)", i, a[i].Header().Ttl, want, age, stale)
			}
		}
	})
}

func fuzzQueries(tb testing.TB) [][]byte {
	var out [][]byte
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	b, _ := m.Pack()
	out = append(out, b)
	m.SetEdns0(4096, true)
	o := m.IsEdns0()
	o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}}
	b, _ = m.Pack()
	return append(out, b)
}

func fuzzReplies(tb testing.TB) [][]byte {
	q := new(dns.Msg)
	q.SetQuestion("fuzz.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	r := new(dns.Msg)
	r.SetReply(q)
	r.Compress = true
	r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "fuzz.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{10, 0, 0, 1}}}
	r.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.example.", Mbox: "h.example.", Minttl: 30}}
	o := new(dns.OPT)
	o.Hdr.Name, o.Hdr.Rrtype = ".", dns.TypeOPT
	o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "01020304050607080102030405060708"}}
	r.Extra = []dns.RR{o}
	b, _ := r.Pack()
	// The fuzz input is the reply without its question.
	end := headerLen + len("fuzz.example.") + 1 + 4
	return [][]byte{append(append([]byte(nil), b[:headerLen]...), b[end:]...)}
}

// pointsIntoTTL says whether some 2-byte sequence of m that reads as a
// compression pointer targets a TTL field (a hostile reply whose names are
// spelled with its TTLs).
func pointsIntoTTL(m []byte, ttls []uint16) bool {
	for i := 0; i+1 < len(m); i++ {
		if m[i]&0xC0 != 0xC0 {
			continue
		}
		target := int(binary.BigEndian.Uint16(m[i:]) & 0x3FFF)
		for _, o := range ttls {
			if target >= int(o)-63 && target < int(o)+4 { // a label that starts before a TTL may cover it
				return true
			}
		}
	}
	return false
}
