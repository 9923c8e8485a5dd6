// Package hostile attacks the real daemon with malformed, abusive and
// forged traffic, from clients and from upstreams, and checks after every
// case that it is alive, answers ready.spartan within 100 ms, and gives
// back its file descriptors and threads.
package hostile

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/testkit"
)

// Limits small enough to reach in a test.
func clientLimits() map[string]any {
	return map[string]any{
		"tcp_connections":  16,
		"tcp_pipeline":     4,
		"tcp_idle_timeout": "2s",
		"tcp_read_timeout": "1s",
	}
}

func TestHostileUDPClients(t *testing.T) {
	up := newUpstream(t)
	d := startDaemon(t, map[string]any{
		"handler_limit":      16,
		"upstream_resolvers": []string{up.Addr.String()},
		"upstream_timeout":   "1s",
		"limits":             clientLimits(),
	})
	ok := dnstest.Pack(t, query("ok.hostile.test.", dns.TypeA))

	// Packets that must get no answer at all.
	silent := []struct {
		name string
		pkt  []byte
	}{
		{"empty datagram", []byte{}},
		{"1 byte", []byte{0x12}},
		{"11 bytes", ok[:11]},
		{"QR set (a response)", func() []byte {
			b := append([]byte(nil), ok...)
			b[2] |= 0x80
			return b
		}()},
		{"QR set, ready.spartan", func() []byte {
			m := query("ready.spartan.", dns.TypeA)
			m.Response = true
			return dnstest.Pack(t, m)
		}()},
		{"QR set, answer section", func() []byte {
			m := query("ready.spartan.", dns.TypeA)
			m.Response = true
			rr, _ := dns.NewRR("ready.spartan. 5 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
			return dnstest.Pack(t, m)
		}()},
	}
	for _, tc := range silent {
		t.Run("dropped/"+tc.name, func(t *testing.T) {
			if got := udpReplies(t, d.sp.Addr, [][]byte{tc.pkt}, 300*time.Millisecond); len(got) != 0 {
				t.Errorf("got %d replies, want none: %x", len(got), got[0])
			}
			d.checkHealthy(t)
		})
	}

	// Queries that parse but are not standard queries: FORMERR or NOTIMP,
	// with the query's ID and QR set.
	formerr := []struct {
		name  string
		pkt   []byte
		codes []int
	}{
		{"no question", func() []byte {
			m := query("x.", dns.TypeA)
			m.Question = nil
			return dnstest.Pack(t, m)
		}(), []int{dns.RcodeFormatError}},
		{"two questions", func() []byte {
			m := query("ok.hostile.test.", dns.TypeA)
			m.Question = append(m.Question, dns.Question{Name: "ready.spartan.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return dnstest.Pack(t, m)
		}(), []int{dns.RcodeFormatError}},
		{"65535 questions claimed", func() []byte {
			b := append([]byte(nil), ok...)
			b[4], b[5] = 0xff, 0xff
			return b
		}(), []int{dns.RcodeFormatError}},
	}
	for _, op := range []int{dns.OpcodeIQuery, dns.OpcodeStatus, 3, dns.OpcodeNotify, dns.OpcodeUpdate, 15} {
		m := query("ok.hostile.test.", dns.TypeSOA)
		m.Opcode = op
		formerr = append(formerr, struct {
			name  string
			pkt   []byte
			codes []int
		}{fmt.Sprintf("opcode %d", op), dnstest.Pack(t, m), []int{dns.RcodeFormatError, dns.RcodeNotImplemented}})
	}
	for _, tc := range formerr {
		t.Run("rejected/"+tc.name, func(t *testing.T) {
			got := udpReplies(t, d.sp.Addr, [][]byte{tc.pkt}, 500*time.Millisecond)
			if len(got) != 1 {
				t.Fatalf("got %d replies, want exactly one FORMERR/NOTIMP", len(got))
			}
			checkRejection(t, tc.pkt, got[0], tc.codes)
			d.checkHealthy(t)
		})
	}

	// A valid header whose question is cut off: it does not parse, so it
	// is dropped or answered FORMERR, never forwarded or answered otherwise.
	t.Run("truncated question", func(t *testing.T) {
		var pkts [][]byte
		byID := map[uint16][]byte{}
		for cut := 13; cut < len(ok); cut += 3 {
			b := append([]byte(nil), ok[:cut]...)
			binary.BigEndian.PutUint16(b, uint16(cut))
			pkts = append(pkts, b)
			byID[uint16(cut)] = b
		}
		for _, r := range udpReplies(t, d.sp.Addr, pkts, 500*time.Millisecond) {
			q, found := byID[binary.BigEndian.Uint16(r)]
			if !found {
				t.Errorf("reply with an ID we never sent: %x", r)
				continue
			}
			checkRejection(t, q, r, []int{dns.RcodeFormatError})
		}
		d.checkHealthy(t)
	})

	// More queries than handler_limit (16) at once, all waiting on a slow
	// upstream: the excess is shed, and the daemon recovers.
	t.Run("beyond handler_limit", func(t *testing.T) {
		const n, limit = 300, 16
		var pkts [][]byte
		for i := 0; i < n; i++ {
			m := query(fmt.Sprintf("slow.f%d.hostile.test.", i), dns.TypeA)
			m.Id = uint16(2000 + i) // fixed and distinct
			pkts = append(pkts, dnstest.Pack(t, m))
		}
		shed0 := d.metric(t, "spartan_shed_queries_total")
		// All 300 are read long before the first slow answer (300 ms)
		// frees a slot, so at most handler_limit get one.
		replies := udpReplies(t, d.sp.Addr, pkts, 1500*time.Millisecond)
		shed := d.metric(t, "spartan_shed_queries_total") - shed0
		t.Logf("%d queries against handler_limit %d: %d answered, %v shed", n, limit, len(replies), shed)
		if len(replies) == 0 || len(replies) > limit {
			t.Errorf("%d answered, want 1..%d (handler_limit)", len(replies), limit)
		}
		// Every query not answered was shed, give or take the few the
		// kernel may drop from a full socket buffer before the daemon
		// reads them; none is shed that was answered.
		if shed > float64(n-len(replies)) || shed < float64(n-limit)*0.9 {
			t.Errorf("shed counter rose by %v for %d unanswered queries", shed, n-len(replies))
		}
		d.checkHealthy(t)
	})

	// Random bytes: whatever is answered must be a response (QR) to a
	// packet that was a query (QR clear), and never to a QR-set packet.
	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		sent := map[uint16][]byte{}
		var pkts [][]byte
		for i := 0; i < 300; i++ {
			b := make([]byte, 12+rng.IntN(500))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			binary.BigEndian.PutUint16(b, uint16(i))
			sent[uint16(i)] = b
			pkts = append(pkts, b)
		}
		replies := udpReplies(t, d.sp.Addr, pkts, time.Second)
		for _, r := range replies {
			if len(r) < 12 {
				t.Errorf("reply shorter than a header: %x", r)
				continue
			}
			q, found := sent[binary.BigEndian.Uint16(r)]
			if !found {
				t.Errorf("reply with an ID we never sent")
				continue
			}
			if q[2]&0x80 != 0 {
				t.Errorf("a packet with QR set was answered (reflection): %x", q[:12])
			}
			if r[2]&0x80 == 0 {
				t.Errorf("reply without QR")
			}
		}
		t.Logf("%d random packets, %d replies", len(pkts), len(replies))
		d.checkHealthy(t)
	})
}

// checkRejection requires reply to be a FORMERR/NOTIMP response to q.
func checkRejection(t *testing.T, q, reply []byte, codes []int) {
	t.Helper()
	if len(reply) < 12 {
		t.Fatalf("reply shorter than a header: %x", reply)
	}
	if reply[0] != q[0] || reply[1] != q[1] {
		t.Errorf("reply ID %x, want the query's %x", reply[:2], q[:2])
	}
	if reply[2]&0x80 == 0 {
		t.Errorf("reply without QR")
	}
	if op := q[2] >> 3 & 0x0f; op != dns.OpcodeQuery {
		// Not a QUERY: the opcode is echoed, and AA, TC, RD, RA, Z, AD and
		// CD, defined for QUERY only, stay clear (SPEC "Bad input"; as BIND).
		if reply[2]>>3&0x0f != op || reply[2]&0x07 != 0 || reply[3]&0xf0 != 0 {
			t.Errorf("reply flags %02x%02x to opcode %d, want opcode echoed and no other flag", reply[2], reply[3], op)
		}
	}
	rcode := int(reply[3] & 0x0f)
	for _, c := range codes {
		if rcode == c {
			return
		}
	}
	t.Errorf("rcode %s, want one of %v", dns.RcodeToString[rcode], codes)
}

func TestHostileTCPClients(t *testing.T) {
	up := newUpstream(t)
	d := startDaemon(t, map[string]any{
		"upstream_resolvers": []string{up.Addr.String()},
		"upstream_timeout":   "1s",
		"limits":             clientLimits(),
	})
	ok := dnstest.Pack(t, query("ok.hostile.test.", dns.TypeA))

	// Frames that lie about their length. The read timeout is 1 s and the
	// idle timeout 2 s, so every such connection must be gone within 4 s,
	// and nothing may be answered to a frame that is not a query.
	lying := []struct {
		name string
		data []byte
	}{
		{"length larger than sent", append(binary.BigEndian.AppendUint16(nil, 500), ok...)},
		{"length 0", []byte{0, 0}},
		{"length 0 then a query", append([]byte{0, 0}, dnstest.Frame(ok)...)},
		{"length smaller than sent", append(binary.BigEndian.AppendUint16(nil, 5), ok...)},
		{"length 65535, nothing sent", []byte{0xff, 0xff}},
		{"half a length", []byte{0x00}},
		{"QR set", func() []byte {
			b := append([]byte(nil), ok...)
			b[2] |= 0x80
			return dnstest.Frame(b)
		}()},
		{"11-byte message", dnstest.Frame(ok[:11])},
	}
	for _, tc := range lying {
		t.Run("lying/"+tc.name, func(t *testing.T) {
			c := dialTCP(t, d.sp.Addr)
			if _, err := c.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
			start := time.Now()
			for {
				r, err := dnstest.ReadFrame(c)
				if err != nil {
					break // closed (or our deadline; checked below)
				}
				// Only the real query after a zero-length frame may be answered.
				if tc.name != "length 0 then a query" || binary.BigEndian.Uint16(r) != binary.BigEndian.Uint16(ok) {
					t.Errorf("unexpected answer: %x", r)
				}
			}
			if took := time.Since(start); took >= 4*time.Second {
				t.Errorf("connection still open after %v", took)
			}
			d.checkHealthy(t)
		})
	}

	// Not standard queries, over TCP: FORMERR or NOTIMP on the same
	// connection, which stays usable.
	t.Run("rejected over TCP", func(t *testing.T) {
		two := query("ok.hostile.test.", dns.TypeA)
		two.Question = append(two.Question, two.Question[0])
		notify := query("ok.hostile.test.", dns.TypeSOA)
		notify.Opcode = dns.OpcodeNotify
		c := dialTCP(t, d.sp.Addr)
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		for _, q := range [][]byte{dnstest.Pack(t, two), dnstest.Pack(t, notify)} {
			if _, err := c.Write(dnstest.Frame(q)); err != nil {
				t.Fatal(err)
			}
			r, err := dnstest.ReadFrame(c)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			checkRejection(t, q, r, []int{dns.RcodeFormatError, dns.RcodeNotImplemented})
		}
		if _, err := c.Write(dnstest.Frame(ok)); err != nil {
			t.Fatal(err)
		}
		if r, err := dnstest.ReadFrame(c); err != nil || binary.BigEndian.Uint16(r) != binary.BigEndian.Uint16(ok) {
			t.Errorf("connection unusable after the rejections: %v", err)
		}
		d.checkHealthy(t)
	})

	// Slowloris: connections that start a frame and stall are cut off by
	// the read timeout, and meanwhile others are served.
	t.Run("slowloris", func(t *testing.T) {
		const n = 12 // below tcp_connections, so only the read timeout can save the daemon
		conns := make([]*net.TCPConn, n)
		for i := range conns {
			conns[i] = dialTCP(t, d.sp.Addr)
			if _, err := conns[i].Write([]byte{0}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := d.readyWithin("tcp"); err != nil {
			t.Errorf("TCP not served while %d slowloris connections hang: %v", n, err)
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if took, err := testkit.WaitClosed(c, 4*time.Second); err != nil {
					t.Errorf("slowloris connection %d: %v", i, err)
				} else if took > 3*time.Second {
					t.Errorf("slowloris connection %d held %v (read timeout 1s)", i, took)
				}
			}()
		}
		wg.Wait()
		d.checkHealthy(t)
	})

	// A flood of idle connections beyond tcp_connections (16): the extra
	// ones are refused, the daemon's fds stay bounded, UDP keeps working.
	t.Run("connection flood", func(t *testing.T) {
		const n = 48
		// Premise: no connection of an earlier subtest still holds a slot
		// (the daemon frees one when it reads the client's close, which
		// may lag the client's Close), or fewer than 16 would be kept.
		waitTCPOpen(t, d, 0)
		var conns []net.Conn
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", d.sp.Addr.String(), time.Second)
			if err != nil {
				continue // refused at the door is fine
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		time.Sleep(300 * time.Millisecond)
		fds := harnessFDs(d)
		if fds > d.baseFDs+16+fdSlack {
			t.Errorf("%d fds with %d connections attempted: more than tcp_connections (16) are held (baseline %d)", fds, n, d.baseFDs)
		}
		if v, err := d.sp.Metric("spartan_tcp_connections_open"); err != nil || v != 16 {
			t.Errorf("spartan_tcp_connections_open = %v (%v) during the flood, want tcp_connections (16)", v, err)
		}
		if _, err := d.readyWithin("udp"); err != nil {
			t.Errorf("UDP not served during the flood: %v", err)
		}
		// Count the connections the daemon kept: they read nothing within
		// 300 ms, while refused ones are closed at once.
		open := 0
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := testkit.WaitClosed(c, 300*time.Millisecond); err != nil {
					mu.Lock()
					open++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		t.Logf("%d connections attempted, %d established, %d kept open, %d daemon fds (baseline %d)", n, len(conns), open, fds, d.baseFDs)
		if open != 16 {
			t.Errorf("%d connections kept open, want exactly tcp_connections (16)", open)
		}
		for _, c := range conns {
			c.Close()
		}
		d.checkHealthy(t)
	})

	// A client that pipelines queries with large answers and never reads:
	// Spartan's writes stall, and it must give the connection up rather
	// than hold it (and its goroutines and handler slots) indefinitely.
	t.Run("client never reads", func(t *testing.T) {
		// Premise: a reading client does get the ~60 KB answer.
		r, err := harness.Query(d.sp.Addr, "bigtxt.premise.hostile.test.", dns.TypeTXT, true, 3*time.Second)
		if err != nil || len(r.Answer) != 220 {
			t.Fatalf("premise: want 220 TXT records over TCP, got %v (%v)", r, err)
		}
		c := dialTCP(t, d.sp.Addr)
		_ = c.SetReadBuffer(4096)
		var all []byte
		for i := 0; i < 100; i++ {
			all = append(all, dnstest.Frame(dnstest.Pack(t, query(fmt.Sprintf("bigtxt.n%d.hostile.test.", i), dns.TypeTXT)))...)
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(all) // may stall once Spartan stops reading; that is fine
		// Wait, without reading, for Spartan to give up: its write deadline
		// (tcp_read_timeout, 1s) passes and it must close. Only then drain.
		time.Sleep(3 * time.Second)
		took, err := testkit.WaitClosed(c, 5*time.Second)
		if err != nil {
			t.Errorf("connection of a client that never reads is still open 3s+%v later", took)
		}
		c.Close()
		d.checkHealthy(t)
	})

	// Pipelining beyond tcp_pipeline (4): never more than 4 of one
	// connection's queries upstream at once, and the connection is not
	// wedged: what is answered is answered correctly.
	t.Run("pipeline beyond limit", func(t *testing.T) {
		c := dialTCP(t, d.sp.Addr)
		const n = 20
		ids := map[uint16]bool{}
		var all []byte
		for i := 0; i < n; i++ {
			m := query(fmt.Sprintf("slow.p%d.hostile.test.", i), dns.TypeA)
			m.Id = uint16(3000 + i) // fixed and distinct
			ids[m.Id] = true
			all = append(all, dnstest.Frame(dnstest.Pack(t, m))...)
		}
		up.slowMax.Store(0)
		if _, err := c.Write(all); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(6 * time.Second))
		answered := 0
		for answered < n {
			r, err := dnstest.ReadFrame(c)
			if err != nil {
				break
			}
			m := new(dns.Msg)
			if err := m.Unpack(r); err != nil || !ids[m.Id] {
				t.Errorf("bad answer %x", r)
				continue
			}
			delete(ids, m.Id)
			answered++
		}
		t.Logf("%d of %d pipelined queries answered, at most %d upstream at once", answered, n, up.slowMax.Load())
		// 20 queries in one write: the connection keeps exactly tcp_pipeline
		// of them upstream at once, never more, and does use all 4.
		if m := up.slowMax.Load(); m != 4 {
			t.Errorf("at most %d queries of one connection upstream at once, want tcp_pipeline (4)", m)
		}
		if answered != n {
			t.Errorf("%d of %d pipelined queries answered: the connection wedged", answered, n)
		}
		c.Close()
		d.checkHealthy(t)
	})
}

// waitTCPOpen waits up to 3 s for the daemon to report want open client
// TCP connections.
func waitTCPOpen(t *testing.T, d *daemon, want float64) {
	t.Helper()
	var got float64
	var err error
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got, err = d.sp.Metric("spartan_tcp_connections_open"); err == nil && got == want {
			return
		}
	}
	t.Fatalf("spartan_tcp_connections_open = %v (%v), want %v", got, err, want)
}

func harnessFDs(d *daemon) int { return harness.OpenFDs(d.sp.PID()) }

func TestHostileUpstreams(t *testing.T) {
	up := newUpstream(t)
	d := startDaemon(t, map[string]any{
		"upstream_resolvers": []string{up.Addr.String()},
		"upstream_timeout":   "1s",
		"limits":             clientLimits(),
	})
	const (
		good     = "good"
		servfail = "servfail"
		either   = "good or servfail" // the upstream's stream is unusable; no answer of the forger's
	)
	cases := []struct {
		kind    string
		network string
		want    string
	}{
		{"wrongid", "udp", good},
		{"wrongq", "udp", good},
		{"otheraddr", "udp", good},
		{"otherip", "udp", good},
		{"garbage", "udp", good},
		{"short", "udp", good},
		{"empty", "udp", good},
		{"noqr", "udp", good},
		{"huge", "udp", good},
		{"allonly", "udp", servfail},
		{"otheraddronly", "udp", servfail},
		{"silent", "udp", servfail},
		{"wrongid", "tcp", either},
		{"wrongq", "tcp", either},
		{"noqr", "tcp", either},
		{"garbage", "tcp", either},
		{"huge", "tcp", either},
		{"tcphuge", "tcp", servfail},
		{"tcpreset", "tcp", servfail},
		{"drip", "tcp", servfail},
		{"silent", "tcp", servfail},
	}
	for _, tc := range cases {
		t.Run(tc.network+"/"+tc.kind, func(t *testing.T) {
			q := query(tc.kind+".up.hostile.test.", dns.TypeA)
			c := &dns.Client{Net: tc.network, Timeout: 3 * time.Second, UDPSize: 65535}
			start := time.Now()
			r, _, err := c.Exchange(q, d.sp.Addr.String())
			took := time.Since(start)
			if err != nil {
				t.Fatalf("no answer after %v: %v", took, err)
			}
			if took > 2*time.Second {
				t.Errorf("answer after %v; upstream_timeout is 1s", took)
			}
			gotGood := r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == goodIP
			gotServfail := r.Rcode == dns.RcodeServerFailure && len(r.Answer) == 0
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok && a.A.String() == badIP {
					t.Fatalf("the forged answer reached the client:\n%v", r)
				}
			}
			t.Logf("%s after %v", dns.RcodeToString[r.Rcode], took)
			switch {
			case tc.want == good && !gotGood,
				tc.want == servfail && !gotServfail,
				tc.want == either && !gotGood && !gotServfail:
				t.Errorf("want %s, got (after %v):\n%v", tc.want, took, r)
			}
			if tc.kind == "drip" {
				// The forwarder must hang up on a dripping upstream, not
				// keep the connection (and a goroutine) for the full drip.
				select {
				case held := <-up.dripDone:
					t.Logf("dripping upstream cut off after %v", held)
					if held > 4*time.Second {
						t.Errorf("dripping upstream connection held %v", held)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("dripping upstream connection still open 5s after the answer")
				}
			}
			d.checkHealthy(t)
		})
	}
}
