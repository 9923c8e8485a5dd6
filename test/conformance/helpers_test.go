package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/bindharness"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/testkit"
)

const ioTimeout = 3 * time.Second

// env is Spartan routing every name to one upstream.
type env struct {
	named *bindharness.Named // nil when the upstream is in-process
	sp    *harness.Spartan
	up    netip.AddrPort // what Spartan forwards to
}

// withNamed starts named and a Spartan whose upstream_resolvers is named.
func withNamed(t *testing.T, extra map[string]any) *env {
	t.Helper()
	n := bindharness.Start(t, "127.0.0.1")
	return &env{named: n, sp: startSpartan(t, n.Addr, extra), up: n.Addr}
}

func startSpartan(t *testing.T, upstream netip.AddrPort, extra map[string]any) *harness.Spartan {
	t.Helper()
	cfg := map[string]any{
		"upstream_resolvers": []string{upstream.String()},
		"upstream_timeout":   "2s",
		// These tests compare each answer with the upstream's answer to the
		// same query, so every query must reach it: an answer from the
		// cache differs by design (SPEC "Cache"). cache_test.go turns it on.
		"cache": map[string]any{"enabled": false},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	sp := harness.Start(t, harness.Options{Config: cfg})
	return sp
}

// digArgs returns the dig arguments that point at addr.
func digArgs(addr netip.AddrPort, args ...string) []string {
	return append([]string{"@" + addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())), "+time=3", "+tries=1"}, args...)
}

// query builds a query; mod may adjust it before packing.
func query(name string, qtype uint16, mod func(*dns.Msg)) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = fixedID(name, qtype)
	if mod != nil {
		mod(m)
	}
	return m
}

// fixedID is a query's ID, fixed by its question: the same on every run
// (no chance collision between two queries of one test, as random IDs
// could have), and distinct for the distinct names of one test.
func fixedID(name string, qtype uint16) uint16 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return uint16(h.Sum32()) ^ qtype
}

// exchangeRaw sends q to addr over "udp" or "tcp" and returns the raw reply
// whose ID matches q's.
func exchangeRaw(addr netip.AddrPort, network string, q []byte) ([]byte, error) {
	c, err := net.DialTimeout(network, addr.String(), ioTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if network == "tcp" {
		if err := dnstest.WriteFrame(c, q); err != nil {
			return nil, err
		}
		r, err := dnstest.ReadFrame(c)
		if err != nil {
			return nil, fmt.Errorf("read tcp reply from %s: %w", addr, err)
		}
		// One query on the connection: the reply must carry its ID.
		if len(r) < 2 || r[0] != q[0] || r[1] != q[1] {
			return nil, fmt.Errorf("tcp reply from %s has ID %x, want the query's %x", addr, r[:min(2, len(r))], q[:2])
		}
		return r, nil
	}
	if _, err := c.Write(q); err != nil {
		return nil, fmt.Errorf("write udp to %s: %w", addr, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("read udp reply from %s: %w", addr, err)
		}
		if n >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func withoutID(b []byte) []byte {
	c := append([]byte(nil), b...)
	if len(c) >= 2 {
		c[0], c[1] = 0, 0
	}
	return c
}

func unpack(b []byte) string {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return fmt.Sprintf("<unparsable: %v> % x", err, b)
	}
	return m.String()
}

// sameAsDirect sends q to named directly and through Spartan over network
// and requires the two replies to be identical, byte for byte, after the
// ID (which must be the query's in both). It returns Spartan's reply.
func (e *env) sameAsDirect(t *testing.T, network string, q *dns.Msg) []byte {
	t.Helper()
	raw := dnstest.Pack(t, q)
	direct, err := exchangeRaw(e.up, network, raw)
	if err != nil {
		t.Fatalf("direct %s query %v: %v", network, q.Question, err)
	}
	proxied, err := exchangeRaw(e.sp.Addr, network, raw)
	if err != nil {
		t.Fatalf("%s query %v through spartan: %v", network, q.Question, err)
	}
	if !bytes.Equal(withoutID(direct), withoutID(proxied)) {
		t.Errorf("%s %v: spartan's reply differs from named's (%d vs %d bytes)\n--- named:\n%s\n--- spartan:\n%s",
			network, q.Question, len(direct), len(proxied), unpack(direct), unpack(proxied))
	}
	return proxied
}

func mustUnpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack reply: %v (% x)", err, b)
	}
	return m
}

// received is one query seen by a fake upstream.
type received struct {
	Raw     []byte
	Msg     *dns.Msg // nil if it did not parse
	Network string
	From    netip.AddrPort
	At      time.Time
}

// handlerFunc returns the raw reply for a query (its ID already the
// query's), or nil for no reply. It may sleep: every query is handled on
// its own goroutine.
type handlerFunc func(q received) []byte

// fakeUpstream is an in-process DNS server on a loopback address, UDP and
// TCP on one port, that records every query and answers through a handler.
type fakeUpstream struct {
	Addr    netip.AddrPort
	handler handlerFunc

	mu   sync.Mutex
	seen []received

	udp *net.UDPConn
	tcp *net.TCPListener
	wg  sync.WaitGroup
}

func newFakeUpstream(t *testing.T, h handlerFunc) *fakeUpstream {
	t.Helper()
	ip, port := testkit.FreeAddr(t)
	addr := netip.AddrPortFrom(ip, uint16(port))
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("fake upstream udp: %v", err)
	}
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		u.Close()
		t.Fatalf("fake upstream tcp: %v", err)
	}
	f := &fakeUpstream{Addr: addr, handler: h, udp: u, tcp: l}
	f.wg.Add(2)
	go f.serveUDP()
	go f.serveTCP()
	t.Cleanup(func() {
		u.Close()
		l.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeUpstream) record(raw []byte, network string, from netip.AddrPort) received {
	r := received{Raw: append([]byte(nil), raw...), Network: network, From: from, At: time.Now()}
	m := new(dns.Msg)
	if err := m.Unpack(raw); err == nil {
		r.Msg = m
	}
	f.mu.Lock()
	f.seen = append(f.seen, r)
	f.mu.Unlock()
	return r
}

// Seen returns the queries received so far.
func (f *fakeUpstream) Seen() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.seen...)
}

func (f *fakeUpstream) serveUDP() {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := f.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r := f.record(buf[:n], "udp", from)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if reply := f.handler(r); reply != nil {
				_, _ = f.udp.WriteToUDPAddrPort(reply, from)
			}
		}()
	}
}

func (f *fakeUpstream) serveTCP() {
	defer f.wg.Done()
	var conns sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	for {
		c, err := f.tcp.AcceptTCP()
		if err != nil {
			return
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}()
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			var wmu sync.Mutex
			var inflight sync.WaitGroup
			defer inflight.Wait()
			for {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				q, err := dnstest.ReadFrame(c)
				if err != nil {
					return
				}
				r := f.record(q, "tcp", from)
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					if reply := f.handler(r); reply != nil {
						wmu.Lock()
						_ = dnstest.WriteFrame(c, reply)
						wmu.Unlock()
					}
				}()
			}
		}()
	}
}

// replyTo builds a reply to q with the given answer records and returns it
// packed. mod may adjust the reply.
func replyTo(q received, mod func(*dns.Msg), answers ...string) []byte {
	if q.Msg == nil {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(q.Msg)
	r.Authoritative = true
	for _, a := range answers {
		rr, err := dns.NewRR(a)
		if err != nil {
			panic(fmt.Sprintf("bad test RR %q: %v", a, err))
		}
		r.Answer = append(r.Answer, rr)
	}
	if mod != nil {
		mod(r)
	}
	b, err := r.Pack()
	if err != nil {
		panic(fmt.Sprintf("pack test reply: %v", err))
	}
	return b
}

// echoA answers every query with one A record.
func echoA(q received) []byte {
	if q.Msg == nil || len(q.Msg.Question) == 0 {
		return nil
	}
	return replyTo(q, nil, q.Msg.Question[0].Name+" 60 IN A 192.0.2.99")
}

var errClosed = errors.New("connection closed")
