package forwarder

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// rawQuery is a query header (ID 1, QDCOUNT 1) followed by the given
// wire-format name labels, the root label and type A / class IN.
func rawQuery(labels ...string) []byte {
	b := []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

// The name rules at their limits (RFC 1035 2.3.4: labels of at most 63
// octets, names of at most 255), and hostile names that must be refused
// without a crash.
func TestQuestionLimits(t *testing.T) {
	l63 := strings.Repeat("a", 63)
	dots := strings.Repeat(".", 63)
	tests := []struct {
		name string
		pkt  []byte
		want string // "" when the question must not parse
	}{
		{"63-octet label", rawQuery(l63, "com"), l63 + ".com."},
		// 63+63+63+61 octets in 4 labels: 255 octets of wire name, the most.
		{"255-octet name", rawQuery(l63, l63, l63, strings.Repeat("b", 61)), l63 + "." + l63 + "." + l63 + "." + strings.Repeat("b", 61) + "."},
		{"256-octet name", rawQuery(l63, l63, l63, strings.Repeat("b", 62)), ""},
		{"upper case A to Z folded", rawQuery("AZaz@[`{"), "azaz@[`{."},
		// Escaping dots doubles their length: a name that fits on the
		// wire but not once escaped is refused, not overrun.
		{"escaped dots beyond the buffer", rawQuery("a", dots, dots), ""},
		{"escaped dots that fit", rawQuery("a", dots), "a." + strings.Repeat(`\.`, 63) + "."},
		{"label past the end", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'}, ""},
	}
	for _, tc := range tests {
		// Capacity cut to the length: nothing beyond the message may be read.
		end, _, name, err := question(tc.pkt[:len(tc.pkt):len(tc.pkt)])
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: parsed as %q, want refused", tc.name, name)
		case tc.want != "" && (err != nil || name != tc.want || end != len(tc.pkt)):
			t.Errorf("%s: %q end %d err %v, want %q end %d", tc.name, name, end, err, tc.want, len(tc.pkt))
		}
	}
}

// Replies the validator must accept whole and refuse when cut: compressed
// names (pointers), records in every section, an empty last record (OPT
// without options), and the question's case changed either way.
func TestValidateReplySections(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("Zz.Aa.example.", dns.TypeA) // both cases of the letters at the ends of the range
	q.Id = 99
	qb := pack(t, q)
	qEnd, _, _, _ := question(qb)
	question := qb[headerLen:qEnd]

	full := new(dns.Msg)
	full.SetReply(q)
	full.Compress = true
	name := q.Question[0].Name
	full.Answer = []dns.RR{
		&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: []byte{10, 0, 0, 1}},
		&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: []byte{10, 0, 0, 2}},
	}
	full.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "Aa.example.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 5}, Ns: "ns.Aa.example."}}
	full.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "ns.Aa.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: []byte{10, 0, 0, 53}}}
	fb := pack(t, full)
	if !bytes.Contains(fb[qEnd:], []byte{0xC0, headerLen}) {
		t.Fatal("premise: the answers' names are not compressed")
	}
	withOPT := full.Copy()
	withOPT.Compress = true
	withOPT.SetEdns0(1232, false) // an OPT with no options: a record ending in RDLENGTH 0
	ob := pack(t, withOPT)

	lower := full.Copy()
	lower.Compress = true
	lower.Question[0].Name = strings.ToLower(name)
	upper := full.Copy()
	upper.Compress = true
	upper.Question[0].Name = strings.ToUpper(name)

	tests := []struct {
		name  string
		reply []byte
		ok    bool
	}{
		{"compressed, every section", fb, true},
		{"OPT last", ob, true},
		{"question lower-cased", pack(t, lower), true},
		{"question upper-cased", pack(t, upper), true},
		{"cut in the additional section", fb[:len(fb)-2], false},
		{"cut in the OPT record", ob[:len(ob)-1], false},
	}
	for _, tc := range tests {
		if err := validateReply(tc.reply, 99, question); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
