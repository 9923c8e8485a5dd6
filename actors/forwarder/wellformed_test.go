package forwarder

import (
	"testing"

	"github.com/miekg/dns"
)

func TestWellFormed(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	q.SetEdns0(1232, true)
	query, _ := q.Pack()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: "www.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: []byte{1, 2, 3, 4}})
	reply, _ := r.Pack() // compressed names
	update := new(dns.Msg)
	update.SetUpdate("example.com.")
	upd, _ := update.Pack()
	header := make([]byte, 12)

	cases := []struct {
		name string
		m    []byte
		want bool
	}{
		{"query with OPT", query, true},
		{"reply with a compressed answer", reply, true},
		{"update opcode (NOTIMP, but well formed)", upd, true},
		{"header only", header, true},
		{"short of a header", query[:11], false},
		{"cut in the question", query[:20], false},
		{"cut in the OPT record", query[:len(query)-3], false},
		{"trailing bytes", append(append([]byte{}, query...), 0, 0), false},
		{"count past the data", append(append([]byte{}, header[:4]...), 0, 9, 0, 0, 0, 0, 0, 0), false},
		{"label over 63", append(append([]byte{}, header[:4]...), append([]byte{0, 1, 0, 0, 0, 0, 0, 0}, 64, 'a', 0, 0, 1, 0, 1)...), false},
	}
	for _, c := range cases {
		if got := WellFormed(c.m); got != c.want {
			t.Errorf("%s: WellFormed = %v, want %v", c.name, got, c.want)
		}
	}
}
