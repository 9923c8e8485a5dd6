package bindharness

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/harness"
)

func dig(t *testing.T, n *Named, args ...string) string {
	t.Helper()
	return harness.Dig(t, append([]string{"@" + n.Addr.Addr().String(), "-p", strconv.Itoa(int(n.Addr.Port())), "+time=2", "+tries=1"}, args...)...)
}

// TestZones checks every zone promise the package makes, with dig and with
// miekg/dns, so conformance tests can rely on them.
func TestZones(t *testing.T) {
	start := time.Now()
	n := Start(t, "127.0.0.1")
	t.Logf("named ready in %v at %s", time.Since(start), n.Addr)

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"signed with RRSIG", []string{"+dnssec", NameSignedWWW, "A"}, []string{"status: NOERROR", "RRSIG", "192.0.2.10", "flags: do;"}},
		{"DNSKEY", []string{"+dnssec", SignedZone, "DNSKEY"}, []string{"DNSKEY\t257 3 13", "DNSKEY\t256 3 13"}},
		{"NSEC on NXDOMAIN", []string{"+dnssec", "nope." + SignedZone, "A"}, []string{"status: NXDOMAIN", "NSEC"}},
		{"NSEC3", []string{"+dnssec", "nope." + NSEC3Zone, "A"}, []string{"status: NXDOMAIN", "NSEC3"}},
		{"unknown type", []string{NameUnknown, "TYPE65400"}, []string{"TYPE65400", `\# 4 0A000001`}},
		{"nxdomain", []string{NameNX, "A"}, []string{"status: NXDOMAIN"}},
		{"nodata", []string{NameNoData, "AAAA"}, []string{"status: NOERROR", "ANSWER: 0"}},
		{"cname chain", []string{NameCNAME, "A"}, []string{"c2.plain.test.", "c3.plain.test.", "192.0.2.1", "ANSWER: 4"}},
		{"nsid", []string{"+nsid", NameA}, []string{`NSID: 62 69 6e 64 68 61 72 6e 65 73 73 ("bindharness")`}},
		{"badvers", []string{"+edns=1", "+noednsneg", NameA}, []string{"status: BADVERS"}},
		{"many A over TCP", []string{"+tcp", NameManyA, "A"}, []string{"ANSWER: 100"}},
		{"txt8k over TCP", []string{"+tcp", NameTXT8K, "TXT"}, []string{"ANSWER: 4"}},
		{"txt8k over UDP truncates", []string{"+ignore", "+bufsize=4096", NameTXT8K, "TXT"}, []string{"flags: qr aa tc"}},
		{"many A without EDNS truncates", []string{"+ignore", "+noedns", NameManyA, "A"}, []string{"flags: qr aa tc"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := dig(t, n, tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("dig %v: missing %q in\n%s", tc.args, w, out)
				}
			}
		})
	}

	// Sizes the conformance suite depends on.
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	for name, min := range map[string]int{NameManyA: 1500, NameTXT2K: 1024, NameTXT8K: 4096} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		if name != NameManyA {
			q.Question[0].Qtype = dns.TypeTXT
		}
		r, _, err := c.Exchange(q, n.Addr.String())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := r.Pack()
		if len(b) <= min {
			t.Errorf("%s: answer is %d bytes, want > %d", name, len(b), min)
		}
	}

	// Fixed rrset-order: two answers must be identical apart from the ID.
	q := new(dns.Msg)
	q.SetQuestion(NameManyA, dns.TypeA)
	q.SetEdns0(4096, false)
	cu := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 4096}
	r1, _, err := cu.Exchange(q, n.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := cu.Exchange(q, n.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := r1.Pack()
	b2, _ := r2.Pack()
	if !bytes.Equal(b1, b2) {
		t.Errorf("two answers for %s differ: rrset-order is not fixed", NameManyA)
	}

	// TSIG-signed queries are answered and signed.
	tq := new(dns.Msg)
	tq.SetQuestion(NameA, dns.TypeA)
	tq.SetTsig(TSIGKeyName, dns.HmacSHA256, 300, time.Now().Unix())
	tc := &dns.Client{Net: "udp", Timeout: 2 * time.Second, TsigSecret: map[string]string{TSIGKeyName: TSIGSecret}}
	tr, _, err := tc.Exchange(tq, n.Addr.String())
	if err != nil {
		t.Fatalf("TSIG exchange: %v", err)
	}
	if tr.IsTsig() == nil || tr.Rcode != dns.RcodeSuccess {
		t.Errorf("TSIG answer not signed or not NOERROR: %v", tr)
	}
}

// TestTwoInstances checks instances on one IP do not collide.
func TestTwoInstances(t *testing.T) {
	a := Start(t, "127.0.0.1")
	b := Start(t, "127.0.0.1")
	if a.Addr == b.Addr {
		t.Fatalf("both instances on %s", a.Addr)
	}
}
