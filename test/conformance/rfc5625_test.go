package conformance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/bindharness"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// RFC 5625 §3: the proxy forwards the request verbatim and returns the
// whole response verbatim. Checked against named for every kind of answer
// the zones hold, over UDP and over TCP.
func TestRFC5625_3_TransparencyPrinciple(t *testing.T) {
	e := withNamed(t, nil)
	edns := func(size uint16, do bool) func(*dns.Msg) {
		return func(m *dns.Msg) { m.SetEdns0(size, do) }
	}
	cases := []struct {
		name  string
		qname string
		qtype uint16
		mod   func(*dns.Msg)
	}{
		{"A", bindharness.NameA, dns.TypeA, nil},
		{"A with EDNS", bindharness.NameA, dns.TypeA, edns(1232, false)},
		{"SOA", bindharness.PlainZone, dns.TypeSOA, nil},
		{"NS", bindharness.PlainZone, dns.TypeNS, nil},
		{"NXDOMAIN", bindharness.NameNX, dns.TypeA, nil},
		{"NODATA", bindharness.NameNoData, dns.TypeAAAA, nil},
		{"CNAME chain", bindharness.NameCNAME, dns.TypeA, nil},
		{"100 A records", bindharness.NameManyA, dns.TypeA, edns(4096, false)},
		{"100 AAAA records", bindharness.NameManyA, dns.TypeAAAA, edns(4096, false)},
		{"2 KB TXT", bindharness.NameTXT2K, dns.TypeTXT, edns(4096, false)},
		{"ANY", bindharness.NameNoData, dns.TypeANY, nil},
		{"RD clear", bindharness.NameA, dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = false }},
		{"upper case name", strings.ToUpper(bindharness.NameA), dns.TypeA, nil},
		{"not our zone (REFUSED)", "example.invalid.", dns.TypeA, nil},
		{"class CH", "version.bind.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range cases {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				e.sameAsDirect(t, network, query(tc.qname, tc.qtype, tc.mod))
			})
		}
	}
}

// RFC 5625 §3 and §4.1: the query reaches the upstream verbatim too (apart
// from the ID, which RFC 5452 wants fresh): flags, the Z bit, EDNS and its
// options are neither stripped nor added.
func TestRFC5625_4_1_QueryForwardedVerbatim(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	cases := []struct {
		name string
		mod  func(*dns.Msg)
	}{
		{"plain RD", nil},
		{"RD clear", func(m *dns.Msg) { m.RecursionDesired = false }},
		{"Z bit", func(m *dns.Msg) { m.Zero = true }},
		{"AD and CD", func(m *dns.Msg) { m.AuthenticatedData = true; m.CheckingDisabled = true }},
		{"EDNS DO 1410", func(m *dns.Msg) { m.SetEdns0(1410, true) }},
		{"EDNS unknown option", func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("spartan-conformance")})
		}},
	}
	for i, tc := range cases {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				name := fmt.Sprintf("q%d-%s.verbatim.test.", i, network)
				q := dnstest.Pack(t, query(name, dns.TypeA, tc.mod))
				if _, err := exchangeRaw(sp.Addr, network, q); err != nil {
					t.Fatalf("query through spartan: %v", err)
				}
				var got *received
				for _, r := range f.Seen() {
					if r.Msg != nil && len(r.Msg.Question) == 1 && r.Msg.Question[0].Name == name {
						got = &r
					}
				}
				if got == nil {
					t.Fatalf("upstream never saw %s", name)
				}
				if !bytes.Equal(withoutID(got.Raw), withoutID(q)) {
					t.Errorf("upstream received a different query\n--- client sent:\n%s\n--- upstream got:\n%s", unpack(q), unpack(got.Raw))
				}
			})
		}
	}
}

// RFC 5625 §4.1: flags and data a proxy does not expect still pass through
// (here: Z bit, AD, CD, RA clear, AA, TC clear with a large answer, and
// rcodes beyond NOERROR/NXDOMAIN/SERVFAIL that the proxy does not act on).
func TestRFC5625_4_1_UnexpectedFlagsAndData(t *testing.T) {
	var mu sync.Mutex
	sent := map[string][]byte{}
	mods := map[string]func(*dns.Msg){
		"zbit.flags.test.": func(r *dns.Msg) { r.Zero = true },
		"ad.flags.test.":   func(r *dns.Msg) { r.AuthenticatedData = true },
		"cd.flags.test.":   func(r *dns.Msg) { r.CheckingDisabled = true },
		"all.flags.test.": func(r *dns.Msg) {
			r.Zero, r.AuthenticatedData, r.CheckingDisabled, r.RecursionAvailable = true, true, true, true
		},
		"noaa.flags.test.":     func(r *dns.Msg) { r.Authoritative = false; r.RecursionAvailable = false },
		"yxdomain.flags.test.": func(r *dns.Msg) { r.Rcode = dns.RcodeYXDomain; r.Answer = nil },
		"notauth.flags.test.":  func(r *dns.Msg) { r.Rcode = dns.RcodeNotAuth; r.Answer = nil },
		"extra.flags.test.": func(r *dns.Msg) {
			// Additional data of an unknown type and a stray authority
			// record: nothing a proxy should prune.
			rr, _ := dns.NewRR(`extra.flags.test. 60 IN TYPE65401 \# 3 010203`)
			ns, _ := dns.NewRR(`flags.test. 60 IN NS ns.elsewhere.example.`)
			r.Extra = append(r.Extra, rr)
			r.Ns = append(r.Ns, ns)
		},
	}
	f := newFakeUpstream(t, func(q received) []byte {
		if q.Msg == nil || len(q.Msg.Question) != 1 {
			return nil
		}
		name := q.Msg.Question[0].Name
		b := replyTo(q, mods[name], name+" 60 IN A 192.0.2.7")
		mu.Lock()
		sent[name+q.Network] = b
		mu.Unlock()
		return b
	})
	sp := startSpartan(t, f.Addr, nil)
	for name := range mods {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+name, func(t *testing.T) {
				q := dnstest.Pack(t, query(name, dns.TypeA, nil))
				got, err := exchangeRaw(sp.Addr, network, q)
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				mu.Lock()
				want := sent[name+network]
				mu.Unlock()
				if !bytes.Equal(withoutID(got), withoutID(want)) {
					t.Errorf("reply changed on the way\n--- upstream sent:\n%s\n--- client got:\n%s", unpack(want), unpack(got))
				}
			})
		}
	}
}

// RFC 5625 §4.2: the proxy must cope with compressed names and must not
// decompress or re-compress. The fake upstream sends one reply with no
// compression at all and one with a pointer into the question and a
// pointer to a pointer; both must arrive unchanged.
func TestRFC5625_4_2_LabelCompression(t *testing.T) {
	f := newFakeUpstream(t, func(q received) []byte {
		if q.Msg == nil || len(q.Msg.Question) != 1 {
			return nil
		}
		name := q.Msg.Question[0].Name
		switch name {
		case "uncompressed.compress.test.":
			r := new(dns.Msg)
			r.SetReply(q.Msg)
			for _, s := range []string{name + " 60 IN CNAME target.compress.test.", "target.compress.test. 60 IN A 192.0.2.8"} {
				rr, _ := dns.NewRR(s)
				r.Answer = append(r.Answer, rr)
			}
			r.Compress = false
			b, _ := r.Pack()
			return b
		case "chain.compress.test.":
			return pointerChainReply(q.Raw)
		}
		return nil
	})
	sp := startSpartan(t, f.Addr, nil)
	for _, name := range []string{"uncompressed.compress.test.", "chain.compress.test."} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+name, func(t *testing.T) {
				q := dnstest.Pack(t, query(name, dns.TypeCNAME, nil))
				if name == "uncompressed.compress.test." {
					q = dnstest.Pack(t, query(name, dns.TypeA, nil))
				}
				got, err := exchangeRaw(sp.Addr, network, q)
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				var m dns.Msg
				_ = m.Unpack(q)
				want := f.handler(received{Raw: q, Msg: &m})
				if !bytes.Equal(withoutID(got), withoutID(want)) {
					t.Errorf("compressed reply changed on the way\n--- upstream sent (% x)\n%s\n--- client got (% x)\n%s", want, unpack(want), got, unpack(got))
				}
			})
		}
	}
}

// pointerChainReply builds, by hand, a reply to the raw query q (question
// "chain.compress.test. CNAME") whose answer owner is a pointer to the
// question name and whose CNAME target "x." + a pointer to a label that is
// itself reached through a pointer.
func pointerChainReply(q []byte) []byte {
	// Header: copy ID, set QR|AA|RD, 1 question, 2 answers.
	b := make([]byte, 12)
	copy(b, q[:2])
	b[2] = 0x85 // QR, AA, RD
	b[3] = 0x00
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], 2)
	// Question as sent by the client.
	qEnd := 12
	for q[qEnd] != 0 {
		qEnd += int(q[qEnd]) + 1
	}
	qEnd += 1 + 4
	b = append(b, q[12:qEnd]...)
	// Offsets: question name at 12: "chain" (6 bytes) then "compress" at 18.
	// Answer 1: owner = ptr(12), CNAME -> "x" + ptr(18) ("x.compress.test.").
	rr1 := []byte{0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60}
	rd1 := []byte{1, 'x', 0xc0, 18}
	rr1 = binary.BigEndian.AppendUint16(rr1, uint16(len(rd1)))
	rr1 = append(rr1, rd1...)
	xOff := len(b) + len(rr1) - len(rd1) // where "x" + ptr starts
	b = append(b, rr1...)
	// Answer 2: owner = ptr to "x"+ptr (a pointer to a pointer chain), A.
	rr2 := []byte{0xc0, byte(xOff), 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 9}
	return append(b, rr2...)
}

// RFC 5625 §4.3: records of unknown types (RFC 3597) pass through, in the
// answer and when asked for by their number.
func TestRFC5625_4_3_UnknownTypes(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			got := mustUnpack(t, e.sameAsDirect(t, network, query(bindharness.NameUnknown, bindharness.TypeUnknown, nil)))
			if len(got.Answer) != 1 {
				t.Fatalf("want 1 answer, got %v", got)
			}
			rr, ok := got.Answer[0].(*dns.RFC3597)
			if !ok || rr.Hdr.Rrtype != bindharness.TypeUnknown || rr.Rdata != "0a000001" {
				t.Errorf("unknown record did not survive: %v", got.Answer[0])
			}
		})
	}
	t.Run("dig", func(t *testing.T) {
		out := harness.Dig(t, digArgs(e.sp.Addr, bindharness.NameUnknown, "TYPE65400")...)
		if !strings.Contains(out, `TYPE65400 \# 4 0A000001`) {
			t.Errorf("dig through spartan did not show the unknown record:\n%s", out)
		}
	})
}

// RFC 5625 §4.4: UDP answers over 512 octets are not truncated, and UDP
// payloads up to at least 4096 octets are forwarded.
func TestRFC5625_4_4_PacketSizeLimits(t *testing.T) {
	e := withNamed(t, nil)
	for _, tc := range []struct {
		qname string
		qtype uint16
		min   int
	}{
		{bindharness.NameTXT2K, dns.TypeTXT, 2000},
		{bindharness.NameManyA, dns.TypeA, 1500},
		{bindharness.NameManyA, dns.TypeAAAA, 2800},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.qname, dns.TypeToString[tc.qtype]), func(t *testing.T) {
			b := e.sameAsDirect(t, "udp", query(tc.qname, tc.qtype, func(m *dns.Msg) { m.SetEdns0(4096, false) }))
			m := mustUnpack(t, b)
			if m.Truncated || len(b) < tc.min {
				t.Errorf("UDP answer of %d bytes (TC=%v), want the full answer of >= %d bytes", len(b), m.Truncated, tc.min)
			}
		})
	}
	// A fake upstream answering a plain (non-EDNS) query with a 4000-byte
	// UDP datagram: the proxy passes what it got rather than cutting it.
	f := newFakeUpstream(t, func(q received) []byte {
		if q.Msg == nil {
			return nil
		}
		var rrs []string
		for i := 0; i < 15; i++ {
			rrs = append(rrs, fmt.Sprintf(`%s 60 IN TXT "%s"`, q.Msg.Question[0].Name, strings.Repeat(string(rune('a'+i)), 250)))
		}
		return replyTo(q, nil, rrs...)
	})
	sp := startSpartan(t, f.Addr, nil)
	t.Run("4000-byte datagram", func(t *testing.T) {
		q := dnstest.Pack(t, query("big.fake.test.", dns.TypeTXT, func(m *dns.Msg) { m.SetEdns0(4096, false) }))
		got, err := exchangeRaw(sp.Addr, "udp", q)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		if len(got) < 3800 {
			t.Errorf("got a %d-byte reply, want the upstream's ~3.9 KB one", len(got))
		}
	})
}

// RFC 5625 §4.4.1: queries over TCP are answered, and forwarded over TCP
// (never tried over UDP first).
func TestRFC5625_4_4_1_TCPTransport(t *testing.T) {
	t.Run("forwarded over TCP", func(t *testing.T) {
		f := newFakeUpstream(t, echoA)
		sp := startSpartan(t, f.Addr, nil)
		for i := 0; i < 5; i++ {
			if _, err := exchangeRaw(sp.Addr, "tcp", dnstest.Pack(t, query(fmt.Sprintf("t%d.tcp.test.", i), dns.TypeA, nil))); err != nil {
				t.Fatalf("TCP query: %v", err)
			}
		}
		for _, r := range f.Seen() {
			if r.Network != "tcp" {
				t.Errorf("a TCP query reached the upstream over %s: %v", r.Network, r.Msg.Question)
			}
		}
		if n := len(f.Seen()); n < 5 {
			t.Errorf("upstream saw %d queries, want 5", n)
		}
	})
	t.Run("large answers over TCP", func(t *testing.T) {
		e := withNamed(t, nil)
		for _, qtype := range []uint16{dns.TypeTXT} {
			b := e.sameAsDirect(t, "tcp", query(bindharness.NameTXT8K, qtype, nil))
			if m := mustUnpack(t, b); len(m.Answer) != 4 {
				t.Errorf("want 4 TXT records over TCP, got %d", len(m.Answer))
			}
			e.sameAsDirect(t, "tcp", query(bindharness.NameTXT8K, qtype, func(m *dns.Msg) { m.SetEdns0(4096, true) }))
		}
		out := harness.Dig(t, digArgs(e.sp.Addr, "+tcp", bindharness.NameManyA, "A")...)
		if !strings.Contains(out, "ANSWER: 100") {
			t.Errorf("dig +tcp through spartan: want 100 answers:\n%s", out)
		}
	})
}

// RFC 5625 §4.4.1 / §4.4.2: a truncated UDP answer is passed on as it is
// (TC set) so that the client retries over TCP, and the retry gets it all.
func TestRFC5625_4_4_1_TruncationPassedThrough(t *testing.T) {
	e := withNamed(t, nil)
	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
		mod   func(*dns.Msg)
	}{
		{"100 A without EDNS", bindharness.NameManyA, dns.TypeA, nil},
		{"8 KB TXT with EDNS 4096", bindharness.NameTXT8K, dns.TypeTXT, func(m *dns.Msg) { m.SetEdns0(4096, false) }},
		{"2 KB TXT with EDNS 1232", bindharness.NameTXT2K, dns.TypeTXT, func(m *dns.Msg) { m.SetEdns0(1232, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.sameAsDirect(t, "udp", query(tc.qname, tc.qtype, tc.mod))
			if !mustUnpack(t, b).Truncated {
				t.Errorf("UDP answer not truncated: the test premise is wrong")
			}
		})
	}
	// A TC reply from an upstream is handed over as it is: the proxy does
	// not swap in an answer of its own (or an empty one).
	f := newFakeUpstream(t, func(q received) []byte {
		return replyTo(q, func(r *dns.Msg) { r.Truncated = true }, q.Msg.Question[0].Name+" 60 IN A 192.0.2.4")
	})
	sp := startSpartan(t, f.Addr, nil)
	t.Run("fake upstream TC", func(t *testing.T) {
		q := dnstest.Pack(t, query("tc.fake.test.", dns.TypeA, nil))
		got, err := exchangeRaw(sp.Addr, "udp", q)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		var m dns.Msg
		_ = m.Unpack(q)
		want := replyTo(received{Msg: &m}, func(r *dns.Msg) { r.Truncated = true }, "tc.fake.test. 60 IN A 192.0.2.4")
		if !bytes.Equal(withoutID(got), withoutID(want)) {
			t.Errorf("TC reply changed on the way\n--- upstream sent:\n%s\n--- client got:\n%s", unpack(want), unpack(got))
		}
	})
	// dig retries over TCP on TC and must get the whole answer.
	out := harness.Dig(t, digArgs(e.sp.Addr, "+noedns", bindharness.NameManyA, "A")...)
	if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 100") {
		t.Errorf("dig did not retry over TCP and get 100 answers through spartan:\n%s", out)
	}
}

// RFC 5625 §4.4.2: EDNS0 passes through: the OPT record of the answer
// (payload size, DO, options such as NSID) reaches the client unchanged.
func TestRFC5625_4_4_2_EDNS0(t *testing.T) {
	e := withNamed(t, nil)
	nsid := func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network+"/NSID", func(t *testing.T) {
			m := mustUnpack(t, e.sameAsDirect(t, network, query(bindharness.NameA, dns.TypeA, nsid)))
			o := m.IsEdns0()
			if o == nil {
				t.Fatalf("no OPT in the answer")
			}
			found := false
			for _, opt := range o.Option {
				if n, ok := opt.(*dns.EDNS0_NSID); ok && n.Nsid == fmt.Sprintf("%x", bindharness.ServerID) {
					found = true
				}
			}
			if !found {
				t.Errorf("NSID %q missing from %v", bindharness.ServerID, o)
			}
			if o.UDPSize() != 4096 {
				t.Errorf("OPT payload size %d, want named's 4096", o.UDPSize())
			}
		})
		t.Run(network+"/payload sizes", func(t *testing.T) {
			for _, size := range []uint16{512, 1232, 1410, 4096, 65000} {
				e.sameAsDirect(t, network, query(bindharness.NameA, dns.TypeA, func(m *dns.Msg) { m.SetEdns0(size, false) }))
			}
		})
	}
	t.Run("dig +nsid", func(t *testing.T) {
		out := harness.Dig(t, digArgs(e.sp.Addr, "+nsid", bindharness.NameA)...)
		if !strings.Contains(out, `("bindharness")`) {
			t.Errorf("dig +nsid through spartan shows no NSID:\n%s", out)
		}
	})
}

// RFC 5625 §4.5: TSIG-signed transactions work end to end. The proxy
// rewrites only the message ID, which TSIG covers through its Original ID
// field, so named accepts the query and the client can verify the answer.
func TestRFC5625_4_5_TSIG(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(bindharness.NameA, dns.TypeA)
			q.SetTsig(bindharness.TSIGKeyName, dns.HmacSHA256, 300, time.Now().Unix())
			c := &dns.Client{Net: network, Timeout: ioTimeout, TsigSecret: map[string]string{bindharness.TSIGKeyName: bindharness.TSIGSecret}}
			r, _, err := c.Exchange(q, e.sp.Addr.String())
			if err != nil {
				t.Fatalf("TSIG exchange through spartan: %v", err)
			}
			if r.Rcode != dns.RcodeSuccess || r.IsTsig() == nil || len(r.Answer) != 1 {
				t.Errorf("want a signed NOERROR answer, got:\n%v", r)
			}
		})
	}
}

// RFC 5625 §5.1: the AD bit passes through in both directions.
func TestRFC5625_5_1_ADBit(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		e.sameAsDirect(t, network, query(bindharness.NameSignedWWW, dns.TypeA, func(m *dns.Msg) { m.AuthenticatedData = true }))
		e.sameAsDirect(t, network, query(bindharness.NameSignedWWW, dns.TypeA, func(m *dns.Msg) {
			m.AuthenticatedData = true
			m.SetEdns0(1232, true)
		}))
	}
	// named as an authoritative server does not set AD, so a fake upstream
	// (acting as a validating resolver) does.
	f := newFakeUpstream(t, func(q received) []byte {
		return replyTo(q, func(r *dns.Msg) { r.AuthenticatedData = q.Msg.AuthenticatedData || q.Msg.IsEdns0() != nil }, q.Msg.Question[0].Name+" 60 IN A 192.0.2.5")
	})
	sp := startSpartan(t, f.Addr, nil)
	for _, network := range []string{"udp", "tcp"} {
		got, err := exchangeRaw(sp.Addr, network, dnstest.Pack(t, query("ad.test.", dns.TypeA, func(m *dns.Msg) { m.AuthenticatedData = true })))
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if !mustUnpack(t, got).AuthenticatedData {
			t.Errorf("%s: AD bit set by the upstream was lost", network)
		}
		for _, r := range f.Seen() {
			if r.Msg != nil && !r.Msg.AuthenticatedData {
				t.Errorf("%s: AD bit of the query was not forwarded", network)
			}
		}
	}
}

// RFC 5625 §5.2: the CD bit is forwarded upstream and echoed back.
func TestRFC5625_5_2_CDBit(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		m := mustUnpack(t, e.sameAsDirect(t, network, query(bindharness.NameSignedWWW, dns.TypeA, func(m *dns.Msg) {
			m.CheckingDisabled = true
			m.SetEdns0(1232, true)
		})))
		if !m.CheckingDisabled {
			t.Errorf("%s: CD not echoed in the answer", network)
		}
	}
	out := harness.Dig(t, digArgs(e.sp.Addr, "+cd", "+dnssec", bindharness.NameSignedWWW)...)
	if !strings.Contains(out, " cd;") && !strings.Contains(out, " cd ") {
		t.Errorf("dig +cd through spartan: no cd flag in the answer:\n%s", out)
	}
}

// RFC 5625 §5.3: with DO set, DNSSEC records (RRSIG, DNSKEY, NSEC, DS-less
// denial) pass through, and the DO bit comes back in the answer's OPT.
func TestRFC5625_5_3_DOBit(t *testing.T) {
	e := withNamed(t, nil)
	do := func(m *dns.Msg) { m.SetEdns0(4096, true) }
	cases := []struct {
		name  string
		qname string
		qtype uint16
		want  uint16 // an RR type that must appear somewhere in the answer
	}{
		{"RRSIG over A", bindharness.NameSignedWWW, dns.TypeA, dns.TypeRRSIG},
		{"DNSKEY", bindharness.SignedZone, dns.TypeDNSKEY, dns.TypeDNSKEY},
		{"NSEC on NXDOMAIN", "nope." + bindharness.SignedZone, dns.TypeA, dns.TypeNSEC},
		{"NSEC on NODATA", bindharness.NameSignedWWW, dns.TypeMX, dns.TypeNSEC},
		{"explicit RRSIG query", bindharness.NameSignedWWW, dns.TypeRRSIG, dns.TypeRRSIG},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range cases {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				m := mustUnpack(t, e.sameAsDirect(t, network, query(tc.qname, tc.qtype, do)))
				if o := m.IsEdns0(); o == nil || !o.Do() {
					t.Errorf("DO bit missing from the answer's OPT")
				}
				if !hasType(m, tc.want) {
					t.Errorf("no %s record in\n%v", dns.TypeToString[tc.want], m)
				}
			})
		}
	}
	t.Run("dig +dnssec", func(t *testing.T) {
		out := harness.Dig(t, digArgs(e.sp.Addr, "+dnssec", bindharness.NameSignedWWW, "A")...)
		if !strings.Contains(out, "flags: do;") || !strings.Contains(out, "RRSIG\tA 13 3") {
			t.Errorf("dig +dnssec through spartan: no DO flag or RRSIG:\n%s", out)
		}
	})
}

func hasType(m *dns.Msg, t uint16) bool {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == t {
				return true
			}
		}
	}
	return false
}

// RFC 5625 §5.4: NSEC3 denial records pass through.
func TestRFC5625_5_4_NSEC3(t *testing.T) {
	e := withNamed(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		m := mustUnpack(t, e.sameAsDirect(t, network, query("nope."+bindharness.NSEC3Zone, dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, true) })))
		if m.Rcode != dns.RcodeNameError || !hasType(m, dns.TypeNSEC3) {
			t.Errorf("%s: want NXDOMAIN with NSEC3, got\n%v", network, m)
		}
		e.sameAsDirect(t, network, query(bindharness.NSEC3Zone, dns.TypeNSEC3PARAM, func(m *dns.Msg) { m.SetEdns0(4096, true) }))
	}
}

// RFC 5625 §6.3: the proxy answers from the address it was asked on, and
// listens only on its configured addresses.
func TestRFC5625_6_3_InterfaceBinding(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnstest.Pack(t, query("bind.test.", dns.TypeA, nil))
	if _, err := c.WriteToUDPAddrPort(q, sp.Addr); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 4096)
	_, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no UDP answer: %v", err)
	}
	if from != sp.Addr {
		t.Errorf("answer came from %s, want %s", from, sp.Addr)
	}
	// Another loopback address on the same port must have no listener.
	other := netip.AddrPortFrom(otherLoopback(sp.Addr.Addr()), sp.Addr.Port())
	if tc, err := net.DialTimeout("tcp", other.String(), time.Second); err == nil {
		tc.Close()
		t.Errorf("something accepts TCP on %s: spartan should bind only %s", other, sp.Addr.Addr())
	}
}

func otherLoopback(a netip.Addr) netip.Addr {
	b := a.As4()
	b[3] ^= 0x80
	if b[3] == 0 || b[3] == 255 {
		b[3] = 77
	}
	return netip.AddrFrom4(b)
}

// RFC 5625 §6.4 (and §7.1, RFC 5452 §9.2): every upstream query uses a
// fresh random ID and a fresh random source port.
func TestRFC5625_6_4_QueryIDAndSourcePortRandomisation(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	const n = 200
	c, err := net.Dial("udp", sp.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		m := query(fmt.Sprintf("r%d.random.test.", i), dns.TypeA, nil)
		m.Id = uint16(1000 + i) // predictable client IDs must not show upstream
		if _, err := c.Write(dnstest.Pack(t, m)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	var ids, ports []int
	for _, r := range f.Seen() {
		if r.Network == "udp" && len(r.Raw) >= 2 {
			ids = append(ids, int(binary.BigEndian.Uint16(r.Raw)))
			ports = append(ports, int(r.From.Port()))
		}
	}
	if len(ids) < n {
		t.Fatalf("upstream saw %d queries, want %d", len(ids), n)
	}
	check := func(what string, v []int, minDistinct, minSpan int) {
		distinct := map[int]bool{}
		consecutiveEqual, step1 := 0, 0
		lo, hi := v[0], v[0]
		for i, x := range v {
			distinct[x] = true
			lo, hi = min(lo, x), max(hi, x)
			if i > 0 && x == v[i-1] {
				consecutiveEqual++
			}
			if i > 0 && (x-v[i-1] == 1 || x-v[i-1] == -1) {
				step1++
			}
		}
		t.Logf("%s: %d values, %d distinct, range %d..%d, %d consecutive equal, %d ±1 steps", what, len(v), len(distinct), lo, hi, consecutiveEqual, step1)
		// Two random 16-bit values in a row are equal with p = 1/65536, so
		// one repeat in 200 happens in 0.3% of honest runs; two, in 5 in a
		// million. A counter or a reused value repeats far more often.
		if consecutiveEqual > 1 {
			t.Errorf("%s: %d consecutive queries reused the previous value", what, consecutiveEqual)
		}
		if len(distinct) < minDistinct {
			t.Errorf("%s: only %d distinct values in %d queries, want >= %d", what, len(distinct), len(v), minDistinct)
		}
		if hi-lo < minSpan {
			t.Errorf("%s: values span only %d..%d, want a spread of >= %d", what, lo, hi, minSpan)
		}
		if step1 > len(v)/10 {
			t.Errorf("%s: %d of %d steps are ±1: sequential, not random", what, step1, len(v))
		}
	}
	// 200 draws from 65536 IDs: a repeat or two is chance; more is not.
	check("query IDs", ids, n-5, 30000)
	// Linux's ephemeral range is ~28000 ports wide.
	check("source ports", ports, n*3/4, 5000)
	same := 0
	for i, id := range ids {
		if id == 1000+i {
			same++
		}
	}
	if same > 2 {
		t.Errorf("%d upstream queries reused the client's ID", same)
	}
}
