package conformance

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/bindharness"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// RFC 6891 §6.1.1: the OPT pseudo-RR passes through a proxy, which is not
// the EDNS endpoint: the query's OPT reaches the upstream as sent and the
// answer's OPT reaches the client as sent.
func TestRFC6891_6_1_1_OPTPassThrough(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		for _, do := range []bool{false, true} {
			m := mustUnpack(t, e.sameAsDirect(t, network, query(bindharness.NameSignedWWW, dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, do) })))
			if o := m.IsEdns0(); o == nil || o.Do() != do {
				t.Errorf("%s DO=%v: answer OPT %v", network, do, o)
			}
		}
	}
	// A query without OPT must not gain one on the way (RFC 6891 §7: only
	// the endpoint adds EDNS).
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	for _, network := range []string{"udp", "tcp"} {
		if _, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, query("noedns.test.", dns.TypeA, nil))); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range f.Seen() {
		if r.Msg != nil && r.Msg.IsEdns0() != nil {
			t.Errorf("%s: query without EDNS reached the upstream with OPT %v", r.Network, r.Msg.IsEdns0())
		}
	}
}

// RFC 6891 §6.1.3: an unknown EDNS version is the responder's business:
// named answers BADVERS, and Spartan passes that answer on instead of
// answering (or dropping) the query itself.
func TestRFC6891_6_1_3_UnknownVersionBADVERS(t *testing.T) {
	e := withNamed(t, nil)
	v1 := func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
	}
	for _, network := range []string{"udp", "tcp"} {
		m := mustUnpack(t, e.sameAsDirect(t, network, query(bindharness.NameA, dns.TypeA, v1)))
		if m.Rcode != dns.RcodeBadVers {
			t.Errorf("%s: rcode %s, want BADVERS", network, dns.RcodeToString[m.Rcode])
		}
		if o := m.IsEdns0(); o == nil || o.Version() != 0 {
			t.Errorf("%s: answer OPT %v, want version 0 from named", network, o)
		}
	}
	out := harness.Dig(t, digArgs(e.sp.Addr, "+edns=1", "+noednsneg", bindharness.NameA)...)
	if !strings.Contains(out, "status: BADVERS") {
		t.Errorf("dig +edns=1 +noednsneg through spartan: want BADVERS:\n%s", out)
	}
}

// RFC 6891 §6.2.3-§6.2.5: the requestor's payload size governs the
// answer; the proxy neither lowers nor raises it: a 1232-byte buffer gets
// TC for a 2 KB answer, a 4096-byte buffer gets it whole.
func TestRFC6891_6_2_5_PayloadSize(t *testing.T) {
	e := withNamed(t, nil)
	for _, tc := range []struct {
		size   uint16
		wantTC bool
	}{
		{512, true}, {1232, true}, {2048, true}, {2400, false}, {4096, false},
	} {
		m := mustUnpack(t, e.sameAsDirect(t, "udp", query(bindharness.NameTXT2K, dns.TypeTXT, func(m *dns.Msg) { m.SetEdns0(tc.size, false) })))
		if m.Truncated != tc.wantTC {
			t.Errorf("EDNS %d: TC=%v, want %v", tc.size, m.Truncated, tc.wantTC)
		}
	}
	out := harness.Dig(t, digArgs(e.sp.Addr, "+bufsize=1232", "+ignore", bindharness.NameTXT2K, "TXT")...)
	if !strings.Contains(out, " tc") {
		t.Errorf("dig +bufsize=1232 +ignore: want the tc flag:\n%s", out)
	}
	out = harness.Dig(t, digArgs(e.sp.Addr, "+bufsize=4096", "+ignore", bindharness.NameTXT2K, "TXT")...)
	if strings.Contains(out, " tc") || !strings.Contains(out, "ANSWER: 1") {
		t.Errorf("dig +bufsize=4096: want the whole answer without tc:\n%s", out)
	}
}

// RFC 6891 §6.2.6 (and §6.1.2): options the proxy does not know travel both ways
// untouched: the client's option reaches the upstream, the upstream's
// option reaches the client.
func TestRFC6891_6_2_6_MiddleboxPassesOptions(t *testing.T) {
	clientOpt := []byte("from-the-client")
	f := newFakeUpstream(t, func(q received) []byte {
		return replyTo(q, func(r *dns.Msg) {
			r.SetEdns0(1410, false)
			o := r.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: 65002, Data: []byte("from-the-upstream")})
		}, q.Msg.Question[0].Name+" 60 IN A 192.0.2.3")
	})
	sp := startSpartan(t, f.Addr, nil)
	for _, network := range []string{"udp", "tcp"} {
		q := query("opt-"+network+".test.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: clientOpt})
		})
		got, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, q))
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		m := mustUnpack(t, got)
		o := m.IsEdns0()
		if o == nil || o.UDPSize() != 1410 || len(o.Option) != 1 || o.Option[0].Option() != 65002 {
			t.Errorf("%s: the upstream's OPT (1410, option 65002) did not reach the client: %v", network, o)
		}
		seen := false
		for _, r := range f.Seen() {
			if r.Msg == nil || r.Msg.Question[0].Name != q.Question[0].Name {
				continue
			}
			seen = true
			ro := r.Msg.IsEdns0()
			if ro == nil || len(ro.Option) != 1 || ro.Option[0].Option() != 65001 || !bytes.Equal(ro.Option[0].(*dns.EDNS0_LOCAL).Data, clientOpt) {
				t.Errorf("%s: the client's option 65001 did not reach the upstream: %v", network, ro)
			}
		}
		if !seen {
			t.Errorf("%s: upstream never saw the query", network)
		}
	}
}

// RFC 6891 §7: for its local zones Spartan is the responder, so a query
// with OPT gets an OPT back, and an EDNS version it does not implement gets
// BADVERS (RFC 6891 §6.1.3). A query without OPT gets none.
func TestRFC6891_7_LocalZoneResponder(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network+"/OPT echoed", func(t *testing.T) {
			got, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, query("ready.spartan.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) })))
			if err != nil {
				t.Fatal(err)
			}
			m := mustUnpack(t, got)
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("ready.spartan: want one A record, got\n%v", m)
			}
			if m.IsEdns0() == nil {
				t.Errorf("a query with OPT got a local answer without OPT")
			}
		})
		t.Run(network+"/no OPT added", func(t *testing.T) {
			got, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, query("ready.spartan.", dns.TypeA, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if m := mustUnpack(t, got); m.IsEdns0() != nil {
				t.Errorf("a query without OPT got a local answer with OPT %v", m.IsEdns0())
			}
		})
		t.Run(network+"/BADVERS", func(t *testing.T) {
			got, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, query("ready.spartan.", dns.TypeA, func(m *dns.Msg) {
				m.SetEdns0(1232, false)
				m.IsEdns0().SetVersion(1)
			})))
			if err != nil {
				t.Fatal(err)
			}
			m := mustUnpack(t, got)
			if m.Rcode != dns.RcodeBadVers || m.IsEdns0() == nil || m.IsEdns0().Version() != 0 {
				t.Errorf("EDNS version 1 to a local zone: want BADVERS with an OPT of version 0, got\n%v", m)
			}
		})
	}
}
