package forwarder

import (
	"testing"

	"github.com/miekg/dns"
)

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestQuestion(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("WwW.Example.COM.", dns.TypeAAAA)
	b := pack(t, m)
	end, qt, name, err := question(b)
	if err != nil || name != "www.example.com." || qt != dns.TypeAAAA || end != len(b) {
		t.Fatalf("question = %d %d %q %v", end, qt, name, err)
	}
	// One label holding a dot is escaped, not split.
	dotted := append(append([]byte{}, b[:12]...), 13)
	dotted = append(dotted, "ready.spartan"...)
	dotted = append(dotted, 0, 0, 1, 0, 1)
	if _, _, name, err := question(dotted); err != nil || name != `ready\.spartan.` {
		t.Fatalf("dotted label: %q %v", name, err)
	}
	root := new(dns.Msg)
	root.SetQuestion(".", dns.TypeNS)
	if _, _, name, err := question(pack(t, root)); err != nil || name != "." {
		t.Fatalf("root: %q %v", name, err)
	}
	bad := map[string][]byte{
		"truncated name":  b[:15],
		"no type/class":   b[:len(b)-3],
		"label too long":  append(append([]byte{}, b[:12]...), 64, 'a'),
		"pointer in name": append(append([]byte{}, b[:12]...), 0xC0, 0x0C, 0, 1, 0, 1),
	}
	for name, pkt := range bad {
		if _, _, _, err := question(pkt); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestValidateReply(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.com.", dns.TypeA)
	q.Id = 4242
	qb := pack(t, q)
	qEnd, _, _, _ := question(qb)
	good := new(dns.Msg)
	good.SetReply(q)
	good.Answer = append(good.Answer, &dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{1, 2, 3, 4}})
	gb := pack(t, good)

	upper := good.Copy()
	upper.Question[0].Name = "EXAMPLE.com."
	otherQ := good.Copy()
	otherQ.Question[0].Name = "example.org."
	otherT := good.Copy()
	otherT.Question[0].Qtype = dns.TypeAAAA
	notReply := good.Copy()
	notReply.Response = false
	wrongID := good.Copy()
	wrongID.Id = 1

	tests := []struct {
		name  string
		reply []byte
		err   error
	}{
		{"good", gb, nil},
		{"0x20 case", pack(t, upper), nil},
		{"short", gb[:11], errShort},
		{"not a reply", pack(t, notReply), errNotReply},
		{"wrong id", pack(t, wrongID), errIDMismatch},
		{"other name", pack(t, otherQ), errQuestion},
		{"other type", pack(t, otherT), errQuestion},
		{"truncated answer", gb[:len(gb)-2], errTruncated},
	}
	for _, tc := range tests {
		if err := validateReply(tc.reply, 4242, qb[headerLen:qEnd]); err != tc.err {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestErrorReply(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.com.", dns.TypeA)
	q.Id = 777
	qb := pack(t, q)
	qEnd, _, _, _ := question(qb)
	var r dns.Msg
	if err := r.Unpack(errorReply(qb, qEnd, rcodeServFail)); err != nil {
		t.Fatal(err)
	}
	if r.Id != 777 || !r.Response || r.Rcode != dns.RcodeServerFailure || !r.RecursionDesired ||
		len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		t.Fatalf("bad SERVFAIL: %v", &r)
	}
	if err := r.Unpack(errorReply(qb, 0, rcodeFormErr)); err != nil || r.Rcode != dns.RcodeFormatError || len(r.Question) != 0 {
		t.Fatalf("bad FORMERR: %v %v", &r, err)
	}
}
