// Package e2e runs the real spartan binary on loopback and queries it with
// dig and miekg/dns clients, against in-process upstreams (test/dnstest).
package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/testkit"
)

func dig(t *testing.T, s *harness.Spartan, args ...string) string {
	t.Helper()
	base := []string{"@" + s.Addr.Addr().String(), "-p", fmt.Sprint(s.Addr.Port()), "+time=3", "+tries=1"}
	return harness.Dig(t, append(base, args...)...)
}

func digShort(t *testing.T, s *harness.Spartan, args ...string) string {
	t.Helper()
	return strings.TrimSpace(dig(t, s, append([]string{"+short"}, args...)...))
}

func status(out string) string {
	i := strings.Index(out, "status: ")
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.Fields(out[i+len("status: "):])[0], ",")
}

func addrs(us ...*dnstest.Upstream) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Addr.String())
	}
	return out
}

// TestRoutingRows checks every row of the spec's routing table through the
// real daemon with dig.
func TestRoutingRows(t *testing.T) {
	def := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.1"))
	zone := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.2"))
	sub := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.3"))
	// Two masters on different loopback IPs, same port (= mesos_dns_port).
	m1 := dnstest.Start(t, "127.0.0.2", dnstest.Answer("10.0.0.4"))
	m2, err := dnstest.StartAt(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), m1.Addr.Port()), dnstest.Answer("10.0.0.4"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	masterList := filepath.Join(t.TempDir(), "master_list")
	if err := os.WriteFile(masterList, []byte(`["127.0.0.3", "127.0.0.2", "127.0.0.2"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(def),
		"forward_zones": map[string][]string{
			"example.com":   addrs(zone),
			"a.example.com": addrs(sub),
		},
		"master_source":                   "master_list",
		"master_list_file":                masterList,
		"mesos_dns_port":                  int(m1.Addr.Port()),
		"masters_refresh_interval_normal": "1s",
		"masters_refresh_interval_fail":   "200ms",
	}})
	bindIP := s.Addr.Addr().String()

	// Masters arrive from the watcher shortly after start.
	deadline := time.Now().Add(5 * time.Second)
	for digShort(t, s, "zk-1.zk") != "127.0.0.2" {
		if time.Now().After(deadline) {
			t.Fatalf("zk-1.zk never became the first master; log:\n%s", s.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	tests := []struct {
		name, qtype, status, answer string
	}{
		{"ready.spartan", "A", "NOERROR", "127.0.0.1"},
		{"READY.SPARTAN", "A", "NOERROR", "127.0.0.1"},
		{"ns.spartan", "A", "NOERROR", bindIP},
		{"nothing.spartan", "A", "NXDOMAIN", ""},
		{"localhost", "A", "NOERROR", "127.0.0.1"},
		{"zk-1.zk", "A", "NOERROR", "127.0.0.2"},
		{"zk-2.zk", "A", "NOERROR", "127.0.0.3"},
		{"zk-3.zk", "A", "NOERROR", "127.0.0.2"},
		{"zk-4.zk", "A", "NOERROR", "127.0.0.3"},
		{"zk-5.zk", "A", "NOERROR", "127.0.0.2"},
		{"zk-6.zk", "A", "NXDOMAIN", ""},
		{"leader.mesos", "A", "NOERROR", "10.0.0.4"},
		{"www.example.com", "A", "NOERROR", "10.0.0.2"},
		{"example.com", "A", "NOERROR", "10.0.0.2"},
		{"x.a.example.com", "A", "NOERROR", "10.0.0.3"},
		{"www.example.org", "A", "NOERROR", "10.0.0.1"},
		{"notexample.com", "A", "NOERROR", "10.0.0.1"},
	}
	for _, tc := range tests {
		out := dig(t, s, tc.name, tc.qtype)
		if st := status(out); st != tc.status {
			t.Errorf("%s: status %s, want %s\n%s", tc.name, st, tc.status, out)
			continue
		}
		if got := digShort(t, s, tc.name, tc.qtype); got != tc.answer {
			t.Errorf("%s: answer %q, want %q", tc.name, got, tc.answer)
		}
	}
	// *.mesos went to both masters (dual dispatch), on mesos_dns_port.
	if m1.Count() == 0 || m2.Count() == 0 {
		t.Errorf("masters saw %d and %d queries; want both raced", m1.Count(), m2.Count())
	}
}

func TestDualDispatch(t *testing.T) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.1"))
	b := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.1"))
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(a, b)}})
	if got := digShort(t, s, "dual.example.net"); got != "10.1.0.1" {
		t.Fatalf("answer %q", got)
	}
	waitFor(t, "both upstreams to see the query", func() bool { return a.Count() == 1 && b.Count() == 1 })
	if a.Seen()[0].From.Port() == b.Seen()[0].From.Port() {
		t.Errorf("both upstream queries used source port %d", a.Seen()[0].From.Port())
	}
}

func TestOneSilentUpstreamStillFast(t *testing.T) {
	silent := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	good := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.2"))
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(silent, good), "upstream_timeout": "5s"}})
	start := time.Now()
	for i := range 40 {
		r, err := harness.Query(s.Addr, fmt.Sprintf("q%d.example.net", i), dns.TypeA, i%4 == 0, 2*time.Second)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	// No query waited for the silent upstream's timeout.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("40 queries took %v", d)
	}
}

func TestAllUpstreamsSilentServFail(t *testing.T) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	b := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(a, b), "upstream_timeout": "500ms"}})
	out := dig(t, s, "silent.example.net")
	if status(out) != "SERVFAIL" || !strings.Contains(out, ";silent.example.net.") {
		t.Fatalf("want SERVFAIL with the question echoed:\n%s", out)
	}
}

func TestSpoofedRepliesIgnored(t *testing.T) {
	spoof := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("6.6.6.6")(q, tcp)
		r.Msg.Id ^= 0x5555
		return r
	})
	other := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("6.6.6.6")(q, tcp)
		r.FromOther = true
		return r
	})
	honest := dnstest.Start(t, "127.0.0.1", dnstest.Slow(30*time.Millisecond, dnstest.Answer("10.1.0.3")))
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(spoof, honest), "forward_zones": map[string][]string{"other.test": addrs(other, honest)}}})
	for _, name := range []string{"spoof.example.net", "x.other.test"} {
		if got := digShort(t, s, name); got != "10.1.0.3" {
			t.Errorf("%s: answer %q, want the honest upstream's", name, got)
		}
	}
}

func TestTruncationAndTCPRetry(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("10.1.0.4")(q, tcp)
		if !tcp {
			r.Msg.Answer, r.Msg.Truncated = nil, true
		}
		return r
	})
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up)}})
	// +ignore: dig shows the truncated UDP reply as it came.
	if out := dig(t, s, "+ignore", "tc.example.net"); !strings.Contains(out, " tc ") && !strings.Contains(out, " tc;") {
		t.Fatalf("TC flag not passed on:\n%s", out)
	}
	// By default dig retries over TCP, and Spartan goes upstream over TCP.
	if got := digShort(t, s, "tc.example.net"); got != "10.1.0.4" {
		t.Fatalf("TCP retry answer %q", got)
	}
	var udp, tcp int
	for _, q := range up.Seen() {
		if q.TCP {
			tcp++
		} else {
			udp++
		}
	}
	if udp != 2 || tcp != 1 {
		t.Fatalf("upstream saw %d UDP and %d TCP queries, want 2 and 1", udp, tcp)
	}
}

func TestEDNSOptionsAndDOPassThrough(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("10.1.0.5")(q, tcp)
		if opt := q.IsEdns0(); opt != nil {
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			o.SetUDPSize(1232)
			if opt.Do() {
				o.SetDo()
			}
			o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "7570737472"}) // "upstr"
			r.Msg.Extra = append(r.Msg.Extra, o)
		}
		return r
	})
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up)}})
	out := dig(t, s, "+dnssec", "+nsid", "+bufsize=3000", "edns.example.net")
	if !strings.Contains(out, `NSID: 75 70 73 74 72 ("upstr")`) || !strings.Contains(out, "flags: do;") || !strings.Contains(out, "udp: 1232") {
		t.Fatalf("upstream's OPT not passed through:\n%s", out)
	}
	var seen dns.Msg
	if err := seen.Unpack(up.Seen()[0].Packet); err != nil {
		t.Fatal(err)
	}
	opt := seen.IsEdns0()
	if opt == nil || !opt.Do() || opt.UDPSize() != 3000 || len(opt.Option) == 0 || opt.Option[0].Option() != dns.EDNS0NSID {
		t.Fatalf("upstream saw OPT %v", opt)
	}
}

func TestLargeAnswers(t *testing.T) {
	big := func(q *dns.Msg, tcp bool) dnstest.Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		for i := range 60 {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 9, 0, byte(i))})
		}
		if opt := q.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		return dnstest.Reply{Msg: m}
	}
	up := dnstest.Start(t, "127.0.0.1", big)
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up)}})
	for _, args := range [][]string{{"+bufsize=4096", "+ignore"}, {"+tcp"}} {
		out := dig(t, s, append(args, "big.example.net")...)
		if n := strings.Count(out, "\tIN\tA\t10.9.0."); n != 60 {
			t.Fatalf("%v: %d A records, want 60:\n%s", args, n, out)
		}
		if !strings.Contains(out, "MSG SIZE  rcvd: 1") { // > 512 bytes: 4 digits starting with 1
			t.Errorf("%v: unexpected size line:\n%s", args, out)
		}
	}
}

func TestTCPPipeliningOutOfOrder(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", func(q *dns.Msg, tcp bool) dnstest.Reply {
		r := dnstest.Answer("10.1.0.6")(q, tcp)
		if strings.HasPrefix(q.Question[0].Name, "slow.") {
			r.Delay = 400 * time.Millisecond
		}
		return r
	})
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up)}})
	c, err := net.Dial("tcp", s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"slow.example.net.", "fast1.example.net.", "fast2.example.net."}
	var frames []byte
	for i, n := range names {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		m.Id = uint16(100 + i)
		b, _ := m.Pack()
		frames = binary.BigEndian.AppendUint16(frames, uint16(len(b)))
		frames = append(frames, b...)
	}
	if _, err := c.Write(frames); err != nil { // all three in one write: pipelined
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var order []string
	for range names {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if want := uint16(100 + indexOf(names, m.Question[0].Name)); m.Id != want {
			t.Errorf("%s answered with ID %d, want %d", m.Question[0].Name, m.Id, want)
		}
		order = append(order, m.Question[0].Name)
	}
	if order[2] != "slow.example.net." {
		t.Fatalf("answers came in order %v; the slow one should be last", order)
	}
}

func TestOverloadShedding(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	s := harness.Start(t, harness.Options{HTTP: true, Config: map[string]any{
		"upstream_resolvers": addrs(up), "handler_limit": 4, "upstream_timeout": "2s"}})
	metric := func(name string) float64 {
		v, err := s.Metric(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	c, err := net.Dial("udp", s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("shed%d.example.net.", i), dns.TypeA)
		m.Id = uint16(500 + i) // fixed and distinct
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// Only handler_limit queries got a slot and reached the upstream (each
	// may have been retransmitted: distinct questions count). Once the
	// other 16 are counted as shed, every query has been dealt with.
	waitFor(t, "16 queries shed", func() bool { return metric("spartan_shed_queries_total") == 16 })
	distinct := func() int {
		names := map[string]bool{}
		for _, q := range up.Seen() {
			names[q.Name] = true
		}
		return len(names)
	}
	waitFor(t, "4 queries upstream", func() bool { return distinct() >= 4 })
	if n := distinct(); n != 4 {
		t.Fatalf("upstream saw %d queries (%d names), want 4 (handler_limit)", up.Count(), n)
	}
	// Over the limit, a TCP query gets its connection closed.
	tc, err := net.Dial("tcp", s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	m := new(dns.Msg)
	m.SetQuestion("shed-tcp.example.net.", dns.TypeA)
	b, _ := m.Pack()
	_, _ = tc.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	// Closed, not merely unanswered: a read timeout is not closure.
	if _, err := testkit.WaitClosed(tc, 2*time.Second); err != nil {
		t.Fatalf("TCP query over handler_limit: want the connection closed: %v", err)
	}
	if n := metric("spartan_shed_queries_total"); n != 17 {
		t.Errorf("shed counter %v after the TCP query, want 17", n)
	}
	// Once the in-flight queries time out (2 s), queries are served again.
	for deadline := time.Now().Add(6 * time.Second); metric("spartan_queries_in_flight") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("queries still in flight 6 s after upstream_timeout (2 s)")
		}
	}
	if out := digShort(t, s, "ready.spartan"); out != "127.0.0.1" {
		t.Fatalf("after overload: %q", out)
	}
}

func TestInvalidConfigExits2NamingKey(t *testing.T) {
	bin, _ := harness.Build(t)
	tests := []struct{ config, key string }{
		{`{"udp_port": 0}`, "udp_port"},
		{`{"no_such_key": 1}`, "no_such_key"},
		{`{"upstream_timeout": "soon"}`, "upstream_timeout"},
		{`{"forward_zones": {"example.com": ["not-an-ip"]}}`, "forward_zones"},
		{`{"master_source": "exhibitor"}`, "exhibitor_address"},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-config", path).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%s: err %v, want exit 2\n%s", tc.config, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.key) {
			t.Errorf("%s: output does not name %q:\n%s", tc.config, tc.key, out)
		}
	}
}

func TestSIGTERMIsCleanExit(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Slow(300*time.Millisecond, dnstest.Answer("10.1.0.7")))
	s := harness.Start(t, harness.Options{Config: map[string]any{"upstream_resolvers": addrs(up)}})
	// A query in flight during shutdown is still answered.
	done := make(chan error, 1)
	go func() {
		r, err := harness.Query(s.Addr, "inflight.example.net", dns.TypeA, false, 3*time.Second)
		if err == nil && r.Rcode != dns.RcodeSuccess {
			err = fmt.Errorf("rcode %d", r.Rcode)
		}
		done <- err
	}()
	waitFor(t, "the query to reach the upstream", func() bool { return up.Count() == 1 })
	if code := s.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, s.LogTail(20))
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight query during shutdown: %v", err)
	}
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// waitFor waits up to 3 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, 3*time.Second, cond)
}

// TestKillListenerWhileOthersServe kills one listener through spartanctl
// while a client queries another bind IP: the other never misses, the
// killed one is restarted alone and serves again.
func TestKillListenerWhileOthersServe(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.8"))
	ip1, port := testkit.FreeAddr(t)
	ip2 := netip.AddrFrom4([4]byte{127, 1, ip1.As4()[2], ip1.As4()[3]}) // another loopback IP, same port
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(up),
		"bind_ips":           []string{ip1.String(), ip2.String()},
		"udp_port":           port, "tcp_port": port,
	}})
	other := netip.AddrPortFrom(ip2, uint16(port))

	stop := make(chan struct{})
	type tally struct{ sent, answered int }
	res := make(chan tally)
	go func() {
		var tl tally
		for {
			select {
			case <-stop:
				res <- tl
				return
			default:
			}
			tl.sent++
			if r, err := harness.Query(other, "other.example.net", dns.TypeA, tl.sent%3 == 0, time.Second); err == nil && r.Rcode == dns.RcodeSuccess {
				tl.answered++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	for _, path := range []string{"/spartan/dns/udp-" + ip1.String(), "/spartan/dns/tcp-" + ip1.String()} {
		if out, err := s.Ctl("kill", path); err != nil {
			t.Fatalf("kill %s: %v\n%s", path, err, out)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	tl := <-res
	if tl.sent < 20 || tl.answered != tl.sent {
		t.Fatalf("the other listener answered %d of %d queries while a sibling was killed", tl.answered, tl.sent)
	}
	// The killed listeners are back (restarted alone) and serve again.
	waitFor(t, "killed listeners to serve again", func() bool {
		_, e1 := harness.Query(s.Addr, "ready.spartan", dns.TypeA, false, 200*time.Millisecond)
		_, e2 := harness.Query(s.Addr, "ready.spartan", dns.TypeA, true, 200*time.Millisecond)
		return e1 == nil && e2 == nil
	})
	out, err := s.Ctl("tree", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"path":"/spartan/dns/udp-` + ip1.String() + `","kind":"actor","state":"running","restarts":1`,
		`"path":"/spartan/dns/udp-` + ip2.String() + `","kind":"actor","state":"running","restarts":0`,
	} {
		if !strings.Contains(strings.ReplaceAll(strings.ReplaceAll(out, " ", ""), "\n", ""), want) {
			t.Errorf("tree lacks %s:\n%s", want, out)
		}
	}
}
