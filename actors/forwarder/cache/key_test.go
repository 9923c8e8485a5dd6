package cache

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// keyOf parses the query mod makes of an A query for a.example.
func keyOf(t *testing.T, c *Cache, tcp bool, mod func(m *dns.Msg)) (Query, []byte, bool) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.RecursionDesired = false
	if mod != nil {
		mod(m)
	}
	b := pack(t, m)
	var kb KeyBuf
	cq, ok := c.ParseQuery(b, tcp, &kb)
	return cq, append([]byte(nil), cq.Key...), ok
}

func edns(size uint16, do bool, opts ...dns.EDNS0) func(m *dns.Msg) {
	return func(m *dns.Msg) {
		m.SetEdns0(size, do)
		o := m.IsEdns0()
		o.Option = append(o.Option, opts...)
	}
}

// Two queries share a key exactly when an upstream would answer them
// alike (SPEC "Cache", the key).
func TestKeyParts(t *testing.T) {
	c := New(testCfg, nil)
	nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID}
	cookie := func(v string) dns.EDNS0 { return &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: v} }
	pad := &dns.EDNS0_PADDING{Padding: make([]byte, 16)}
	tests := []struct {
		name   string
		a, b   func(m *dns.Msg)
		tcpB   bool
		shared bool
	}{
		{"same query", nil, nil, false, true},
		{"name case", nil, func(m *dns.Msg) { m.Question[0].Name = "A.ExAmPlE." }, false, true},
		{"RD", nil, func(m *dns.Msg) { m.RecursionDesired = true }, false, false},
		{"CD", nil, func(m *dns.Msg) { m.CheckingDisabled = true }, false, false},
		{"AD", nil, func(m *dns.Msg) { m.AuthenticatedData = true }, false, false},
		{"TCP", nil, nil, true, false},
		{"type", nil, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }, false, false},
		{"class", nil, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, false, false},
		{"another name", nil, func(m *dns.Msg) { m.Question[0].Name = "b.example." }, false, false},
		{"name vs longer name", nil, func(m *dns.Msg) { m.Question[0].Name = "a.example.com." }, false, false},
		{"EDNS vs none", nil, edns(1232, false), false, false},
		{"DO bit", edns(1232, false), edns(1232, true), false, false},
		{"payload size", edns(1232, false), edns(4096, false), false, false},
		{"payload size, low byte only", edns(1232, false), edns(1233, false), false, false},
		{"payload size, high byte only", edns(0x04d0, false), edns(0x05d0, false), false, false},
		{"name case, Z", func(m *dns.Msg) { m.Question[0].Name = "z.example." }, func(m *dns.Msg) { m.Question[0].Name = "Z.example." }, false, true},
		{"EDNS version", edns(1232, false), func(m *dns.Msg) { edns(1232, false)(m); m.IsEdns0().SetVersion(1) }, false, false},
		{"NSID option", edns(1232, false), edns(1232, false, nsid), false, false},
		{"COOKIE ignored", edns(1232, false, cookie("0102030405060708")), edns(1232, false, cookie("a1a2a3a4a5a6a7a8")), false, true},
		{"COOKIE vs none", edns(1232, false), edns(1232, false, cookie("0102030405060708")), false, true},
		{"PADDING ignored", edns(1232, false), edns(1232, false, pad), false, true},
		{"option after COOKIE", edns(1232, false, cookie("0102030405060708")), edns(1232, false, cookie("0102030405060708"), nsid), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qa, ka, okA := keyOf(t, c, false, tt.a)
			qb, kb, okB := keyOf(t, c, tt.tcpB, tt.b)
			if !okA || !okB {
				t.Fatalf("a query bypasses the cache: %v %v", okA, okB)
			}
			if got := bytes.Equal(ka, kb); got != tt.shared {
				t.Errorf("keys shared: %v, want %v\n%x\n%x", got, tt.shared, ka, kb)
			}
			if got := qa.Hash == qb.Hash; got != tt.shared {
				t.Errorf("hashes equal: %v, want %v", got, tt.shared)
			}
			if qa.NameEnd != 12+len("\x01a\x07example\x00") && tt.name != "name case, Z" {
				t.Errorf("NameEnd %d", qa.NameEnd)
			}
		})
	}
}

// The size a client can take, and whether it sent EDNS (SPEC: never beyond
// the advertised payload size over UDP, 512 without EDNS or below 512).
func TestKeyLimit(t *testing.T) {
	c := New(testCfg, nil)
	tests := []struct {
		name  string
		tcp   bool
		mod   func(m *dns.Msg)
		limit int
		edns  bool
	}{
		{"UDP, no EDNS", false, nil, 512, false},
		{"UDP, EDNS 1232", false, edns(1232, false), 1232, true},
		{"UDP, EDNS 100", false, edns(100, false), 512, true},
		{"TCP", true, nil, 65535, false},
		{"TCP, EDNS 1232", true, edns(1232, false), 65535, true},
	}
	for _, tt := range tests {
		q, _, ok := keyOf(t, c, tt.tcp, tt.mod)
		if !ok || q.Limit != tt.limit || q.EDNS != tt.edns {
			t.Errorf("%s: ok %v, limit %d, EDNS %v; want limit %d, EDNS %v", tt.name, ok, q.Limit, q.EDNS, tt.limit, tt.edns)
		}
	}
}

// The edges of what ParseQuery accepts: label and name lengths, options
// that fill the OPT record exactly or overrun it, and the key's bound.
func TestKeyEdges(t *testing.T) {
	c := New(testCfg, nil)
	label63 := strings.Repeat("x", 63)
	name255 := strings.Repeat(label63+".", 3) + strings.Repeat("y", 61) + "." // 4*64 - 1 = 255 octets in wire form
	raw := func(name string, opt []byte) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if opt != nil {
			binary.BigEndian.PutUint16(b[10:], 1)
			b = append(b, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(len(opt)))
			b = append(b, opt...)
		}
		return b
	}
	option := func(code uint16, data []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, code)
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		return append(b, data...)
	}
	long := func(n int) []byte { return option(3, make([]byte, n)) }
	cut := func(b []byte, n int) []byte { return b[:len(b)-n] }
	tests := []struct {
		name string
		q    []byte
		ok   bool
	}{
		{"63-octet label", raw(label63+".example.", nil), true},
		{"255-octet name", raw(name255, nil), true},
		{"query cut in the question", cut(raw("a.example.", nil), 1), false},
		{"query cut in the name", cut(raw("a.example.", nil), 6), false},
		{"an extra byte", append(raw("a.example.", nil), 0), false},
		{"empty OPT", raw("a.example.", []byte{}), true},
		{"one option, exactly", raw("a.example.", option(3, []byte{1, 2})), true},
		{"two options, exactly", raw("a.example.", append(option(3, nil), option(8, []byte{0, 1, 0, 0})...)), true},
		{"option header cut", raw("a.example.", []byte{0, 3, 0}), false},
		{"option data overruns", raw("a.example.", append(option(3, []byte{1, 2}), 0, 8, 0, 9, 1)), false},
		{"OPT cut", cut(raw("a.example.", option(3, []byte{1, 2})), 1), false},
		{"key at MaxKey", raw("a.example.", long(MaxKey-5-len("\x01a\x07example\x00")-6-4)), true},
		{"key over MaxKey", raw("a.example.", long(MaxKey-5-len("\x01a\x07example\x00")-6-3)), false},
		{"COOKIE beyond MaxKey is not in the key", raw("a.example.", option(optCookie, make([]byte, MaxKey))), true},
	}
	for _, tt := range tests {
		var kb KeyBuf
		if _, ok := c.ParseQuery(tt.q, false, &kb); ok != tt.ok {
			t.Errorf("%s: accepted %v, want %v", tt.name, ok, tt.ok)
		}
	}
	// A 64-octet label cannot be packed by miekg/dns: write it by hand.
	q := raw("a.example.", nil)
	bad := append(append([]byte(nil), q[:12]...), 64)
	bad = append(bad, bytes.Repeat([]byte{'x'}, 64)...)
	bad = append(bad, 0, 0, 1, 0, 1)
	var kb KeyBuf
	if _, ok := c.ParseQuery(bad, false, &kb); ok {
		t.Error("a 64-octet label was accepted")
	}
	// The key holds the name lower-cased: keyName gives it back.
	cq, _, _ := keyOf(t, c, false, func(m *dns.Msg) { m.Question[0].Name = "A.Example." })
	if got := keyName(cq.Key); !bytes.Equal(got, []byte("\x01a\x07example\x00")) {
		t.Errorf("keyName %q", got)
	}
}
