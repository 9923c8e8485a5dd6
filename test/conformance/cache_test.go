package conformance

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/bindharness"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// The answer cache against named (SPEC "Cache"): an answer from the cache
// is named's answer byte for byte but for the ID, the question's letter
// case and the TTLs, decreased by the whole seconds spent in the cache;
// when named is frozen, warmed names still answer, stale.

func cacheOn(extra map[string]any) map[string]any {
	c := map[string]any{"enabled": true}
	for k, v := range extra {
		c[k] = v
	}
	return map[string]any{"cache": c}
}

// ttlOffsets returns where the TTL field of every record outside OPT is
// (the test's own walk of the message, independent of the cache's).
func ttlOffsets(t *testing.T, m []byte) []int {
	t.Helper()
	off := 12
	for m[off] != 0 {
		off += 1 + int(m[off])
	}
	off += 5
	n := int(binary.BigEndian.Uint16(m[6:])) + int(binary.BigEndian.Uint16(m[8:])) + int(binary.BigEndian.Uint16(m[10:]))
	var offs []int
	for range n {
		for m[off] != 0 && m[off]&0xC0 != 0xC0 {
			off += 1 + int(m[off])
		}
		if m[off] == 0 {
			off++
		} else {
			off += 2
		}
		if binary.BigEndian.Uint16(m[off:]) != dns.TypeOPT {
			offs = append(offs, off+4)
		}
		off += 10 + int(binary.BigEndian.Uint16(m[off+8:]))
	}
	return offs
}

// decreasedBy reports whether hit is direct with the ID replaced and every
// TTL outside OPT decreased by the same k ∈ [1, 2] seconds, and nothing
// else changed; it returns k.
func decreasedBy(t *testing.T, direct, hit []byte) (int, bool) {
	t.Helper()
	if len(direct) != len(hit) {
		return 0, false
	}
	want := bytes.Clone(direct)
	copy(want, hit[:2])
	offs := ttlOffsets(t, direct)
	if len(offs) == 0 {
		return 0, bytes.Equal(want, hit)
	}
	k := int(binary.BigEndian.Uint32(direct[offs[0]:])) - int(binary.BigEndian.Uint32(hit[offs[0]:]))
	for _, o := range offs {
		binary.BigEndian.PutUint32(want[o:], binary.BigEndian.Uint32(direct[o:])-uint32(k))
	}
	return k, (k == 1 || k == 2) && bytes.Equal(want, hit)
}

func ctlCacheHits(t *testing.T, sp *harness.Spartan) int {
	t.Helper()
	out, err := sp.Ctl("cache", "--json")
	if err != nil {
		t.Fatalf("spartanctl cache --json: %v %s", err, out)
	}
	var s struct{ Hits int }
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	return s.Hits
}

func TestCacheHitsMatchNamed(t *testing.T) {
	e := withNamed(t, cacheOn(nil))
	edns := func(size uint16, do bool) func(*dns.Msg) {
		return func(m *dns.Msg) { m.SetEdns0(size, do) }
	}
	cases := []struct {
		name    string
		network string
		q       *dns.Msg
	}{
		{"A", "udp", query(bindharness.NameA, dns.TypeA, nil)},
		{"A with EDNS", "udp", query(bindharness.NameA, dns.TypeA, edns(1232, false))},
		{"NXDOMAIN", "udp", query(bindharness.NameNX, dns.TypeA, nil)},
		{"NODATA", "udp", query(bindharness.NameNoData, dns.TypeAAAA, edns(1232, false))},
		{"CNAME chain", "udp", query(bindharness.NameCNAME, dns.TypeA, nil)},
		{"100 A records", "udp", query(bindharness.NameManyA, dns.TypeA, edns(4096, false))},
		{"signed, DO", "udp", query(bindharness.NameSignedWWW, dns.TypeA, edns(1232, true))},
		{"unknown type", "udp", query(bindharness.NameUnknown, 65400, nil)},
		{"8 KB TXT over TCP", "tcp", query(bindharness.NameTXT8K, dns.TypeTXT, edns(4096, false))},
		{"A over TCP", "tcp", query(bindharness.NameA, dns.TypeA, nil)},
	}
	direct := make([][]byte, len(cases))
	for i, tc := range cases {
		direct[i] = e.sameAsDirect(t, tc.network, tc.q) // the miss: named's bytes
	}
	start := time.Now()
	time.Sleep(1100 * time.Millisecond) // the behaviour under test: a second in the cache
	hits0 := ctlCacheHits(t, e.sp)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q.Copy()
			q.Id ^= 0x5a5a
			hit, err := exchangeRaw(e.sp.Addr, tc.network, dnstest.Pack(t, q))
			if err != nil {
				t.Fatal(err)
			}
			if binary.BigEndian.Uint16(hit) != q.Id {
				t.Errorf("hit ID %#x, want %#x", binary.BigEndian.Uint16(hit), q.Id)
			}
			if k, ok := decreasedBy(t, direct[i], hit); !ok {
				t.Errorf("%v after %v: the hit is not named's answer with TTLs decreased by 1-2 s (k=%d)\n--- named:\n%s\n--- hit:\n%s",
					tc.q.Question, time.Since(start), k, unpack(direct[i]), unpack(hit))
			}
		})
	}
	if n := ctlCacheHits(t, e.sp) - hits0; n != len(cases) {
		t.Errorf("%d hits counted for %d cached queries", n, len(cases))
	}
	// 0x20: a client's own letter case comes back in the question.
	mixed := query(strings.Replace(bindharness.NameA, "plain", "PlAiN", 1), dns.TypeA, nil)
	hit, err := exchangeRaw(e.sp.Addr, "udp", dnstest.Pack(t, mixed))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustUnpack(t, hit).Question[0].Name; got != mixed.Question[0].Name {
		t.Errorf("question %q, want the client's %q", got, mixed.Question[0].Name)
	}
}

// All upstreams blackholed after a warm-up (named frozen with SIGSTOP):
// every warmed name still answers, within client_timeout, with the stale
// TTL and EDE 3 (EDNS queries), until stale_max_age and not after; once
// named thaws, fresh answers again.
func TestCacheStaleWhileNamedFrozen(t *testing.T) {
	e := withNamed(t, cacheOn(map[string]any{"max_ttl": "1s", "stale_max_age": "3s", "stale_recheck": "1s"}))
	edns := func(m *dns.Msg) { m.SetEdns0(1232, false) }
	warm := []*dns.Msg{
		query(bindharness.NameA, dns.TypeA, edns),
		query(bindharness.NameCNAME, dns.TypeA, edns),
		query(bindharness.NameSignedWWW, dns.TypeAAAA, edns),
		query(bindharness.NameNoData, dns.TypeA, nil), // no EDNS: no EDE
	}
	for _, q := range warm {
		e.sameAsDirect(t, "udp", q)
	}
	fd0, th0 := harness.OpenFDs(e.sp.PID()), harness.Threads(e.sp.PID())
	warmed := time.Now()
	if err := e.named.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = e.named.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer thaw()
	time.Sleep(1200 * time.Millisecond) // expired (max_ttl 1s)
	for round := 0; time.Since(warmed) < 3500*time.Millisecond; round++ {
		for _, q := range warm {
			t0 := time.Now()
			r, err := exchangeRaw(e.sp.Addr, "udp", dnstest.Pack(t, q))
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("round %d %v: %v", round, q.Question, err)
			}
			m := mustUnpack(t, r)
			if took > 1800*time.Millisecond {
				t.Errorf("round %d %v: answered after %v, beyond client_timeout", round, q.Question, took)
			}
			checkStaleAnswer(t, q, m)
		}
	}
	// Past stale_max_age (3 s after expiry): no stale answer, SERVFAIL.
	time.Sleep(time.Until(warmed.Add(4500 * time.Millisecond)))
	r, err := exchangeRaw(e.sp.Addr, "udp", dnstest.Pack(t, warm[0]))
	if err != nil {
		t.Fatal(err)
	}
	if m := mustUnpack(t, r); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("past stale_max_age: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	thaw()
	waitNamed(t, e.up)
	for _, q := range warm {
		m := mustUnpack(t, e.sameAsDirect(t, "udp", q)) // fresh: named's own bytes
		if len(edeCodes(m)) != 0 {
			t.Errorf("after recovery %v: EDE %v", q.Question, edeCodes(m))
		}
	}
	// Nothing leaked by the refreshes that timed out: descriptors and
	// threads back near where they were before the outage (the refreshes
	// retransmitted, each from a socket of its own, which the loops keep
	// idle for up to two trims: SettledFDs).
	if fd, th := harness.SettledFDs(e.sp.PID(), fd0+4, 3*time.Second), harness.Threads(e.sp.PID()); fd > fd0+4 || th > th0+4 {
		t.Errorf("daemon fds %d threads %d after the outage, %d %d before", fd, th, fd0, th0)
	}
}

func checkStaleAnswer(t *testing.T, q, m *dns.Msg) {
	t.Helper()
	if m.Rcode != dns.RcodeSuccess {
		t.Fatalf("%v: %s, want the stale answer", q.Question, dns.RcodeToString[m.Rcode])
	}
	for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
		if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != 30 {
			t.Errorf("%v: %s TTL %d, want stale_answer_ttl 30", q.Question, rr.Header().Name, rr.Header().Ttl)
		}
	}
	codes := edeCodes(m)
	if q.IsEdns0() != nil && (len(codes) != 1 || codes[0] != dns.ExtendedErrorCodeStaleAnswer) {
		t.Errorf("%v: EDE %v, want [3]", q.Question, codes)
	}
	if q.IsEdns0() == nil && m.IsEdns0() != nil {
		t.Errorf("%v: an OPT record in the answer to a query without EDNS", q.Question)
	}
}

func edeCodes(m *dns.Msg) []uint16 {
	var out []uint16
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				out = append(out, e.InfoCode)
			}
		}
	}
	return out
}

// waitNamed polls named until it answers again after SIGCONT.
func waitNamed(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := harness.Query(addr, bindharness.PlainZone, dns.TypeSOA, false, 200*time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("named does not answer after SIGCONT")
		}
	}
}
