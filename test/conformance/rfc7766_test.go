package conformance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/bindharness"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// RFC 7766 §6.2.1.1: many queries may be sent on one connection without
// waiting for answers, and every one is answered.
func TestRFC7766_6_2_1_1_QueryPipelining(t *testing.T) {
	e := withNamed(t, nil)
	names := []struct {
		qname string
		qtype uint16
	}{
		{bindharness.NameA, dns.TypeA},
		{bindharness.NameNX, dns.TypeA},
		{bindharness.NameNoData, dns.TypeAAAA},
		{bindharness.NameCNAME, dns.TypeA},
		{bindharness.NameUnknown, bindharness.TypeUnknown},
		{bindharness.NameManyA, dns.TypeA},
		{bindharness.NameTXT8K, dns.TypeTXT},
		{bindharness.NameSignedWWW, dns.TypeA},
	}
	// Two rounds of each: 16 queries in flight on one connection.
	var qs [][]byte
	want := map[uint16][]byte{}
	for round := 0; round < 2; round++ {
		for _, n := range names {
			q := query(n.qname, n.qtype, nil)
			q.Id = uint16(1000 + len(qs)) // fixed, distinct over both rounds
			raw := dnstest.Pack(t, q)
			direct, err := exchangeRaw(e.up, "tcp", raw)
			if err != nil {
				t.Fatalf("direct: %v", err)
			}
			qs = append(qs, raw)
			want[q.Id] = direct
		}
	}
	c, err := net.DialTimeout("tcp", e.sp.Addr.String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One write with every frame: the strongest form of pipelining.
	var all bytes.Buffer
	for _, q := range qs {
		_ = binary.Write(&all, binary.BigEndian, uint16(len(q)))
		all.Write(q)
	}
	if _, err := c.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < len(qs); i++ {
		r, err := dnstest.ReadFrame(c)
		if err != nil {
			t.Fatalf("after %d of %d answers: %v", i, len(qs), err)
		}
		id := binary.BigEndian.Uint16(r)
		w, ok := want[id]
		if !ok {
			t.Fatalf("answer with unknown or repeated ID %d", id)
		}
		delete(want, id)
		if !bytes.Equal(r, w) {
			t.Errorf("pipelined answer %d differs from named's:\n--- named:\n%s\n--- spartan:\n%s", id, unpack(w), unpack(r))
		}
	}
}

// RFC 7766 §7 (and §6.2.1.1): answers are sent as they complete, so a fast answer
// overtakes a slow one on the same connection.
func TestRFC7766_7_ResponseReordering(t *testing.T) {
	const delay = 800 * time.Millisecond
	f := newFakeUpstream(t, func(q received) []byte {
		if q.Msg == nil {
			return nil
		}
		if strings.HasPrefix(q.Msg.Question[0].Name, "slow") {
			time.Sleep(delay)
		}
		return echoA(q)
	})
	sp := startSpartan(t, f.Addr, nil)
	c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	slow := query("slow.order.test.", dns.TypeA, nil)
	fast := query("fast.order.test.", dns.TypeA, nil)
	fast.Id = slow.Id + 1
	start := time.Now()
	if err := dnstest.WriteFrame(c, dnstest.Pack(t, slow)); err != nil {
		t.Fatal(err)
	}
	// The slow one is surely first in: wait until it reached the upstream.
	for deadline := time.Now().Add(ioTimeout); !sawName(f, "slow.order.test."); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow query never reached the upstream")
		}
	}
	if err := dnstest.WriteFrame(c, dnstest.Pack(t, fast)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var order []string
	var times []time.Duration
	for i := 0; i < 2; i++ {
		r, err := dnstest.ReadFrame(c)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		m := mustUnpack(t, r)
		order = append(order, m.Question[0].Name)
		times = append(times, time.Since(start))
	}
	t.Logf("answers: %v at %v", order, times)
	if order[0] != "fast.order.test." {
		t.Errorf("fast answer waited for the slow one: order %v at %v", order, times)
	}
	if times[0] > delay/2 {
		t.Errorf("first answer after %v, want well under the slow delay %v", times[0], delay)
	}
	if times[1] < delay {
		t.Errorf("slow answer after %v, before its upstream's %v delay", times[1], delay)
	}
}

// RFC 7766 §6.2.2: many concurrent connections from one client are served.
func TestRFC7766_6_2_2_ConcurrentConnections(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	const conns, perConn = 50, 3
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	// Open them all first, so they are truly concurrent.
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		cs[i] = c
	}
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			for j := 0; j < perConn; j++ {
				q := query(fmt.Sprintf("c%d-%d.conc.test.", i, j), dns.TypeA, nil)
				if err := dnstest.WriteFrame(c, dnstest.Pack(t, q)); err != nil {
					errs <- err
					return
				}
				r, err := dnstest.ReadFrame(c)
				if err != nil {
					errs <- fmt.Errorf("conn %d query %d: %w", i, j, err)
					return
				}
				if binary.BigEndian.Uint16(r) != q.Id {
					errs <- fmt.Errorf("conn %d query %d: wrong ID", i, j)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// RFC 7766 §6.2.3: an idle connection is closed by the server after its idle
// timeout (shortened here through limits.tcp_idle_timeout), both before
// any query and after answers.
func TestRFC7766_6_2_3_IdleTimeout(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, map[string]any{"limits": map[string]any{"tcp_idle_timeout": "1s"}})
	t.Run("never used", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		took, err := testkit.WaitClosed(c, 4*time.Second)
		if err != nil {
			t.Fatalf("idle connection: %v", err)
		}
		if took < 700*time.Millisecond {
			t.Errorf("closed after %v, before the 1s idle timeout", took)
		}
	})
	t.Run("after an answer", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		if err := dnstest.WriteFrame(c, dnstest.Pack(t, query("idle.test.", dns.TypeA, nil))); err != nil {
			t.Fatal(err)
		}
		if _, err := dnstest.ReadFrame(c); err != nil {
			t.Fatalf("answer: %v", err)
		}
		took, err := testkit.WaitClosed(c, 4*time.Second)
		if err != nil {
			t.Fatalf("idle connection after an answer: %v", err)
		}
		if took < 700*time.Millisecond {
			t.Errorf("closed %v after the answer, before the 1s idle timeout", took)
		}
	})
}

// RFC 7766 §6.2.1 (and §6.2.3): with the default 10 s idle timeout the server
// keeps the connection open after an answer so the client can reuse it.
func TestRFC7766_6_2_1_ConnectionReuse(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		if err := dnstest.WriteFrame(c, dnstest.Pack(t, query(fmt.Sprintf("reuse%d.test.", i), dns.TypeA, nil))); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if _, err := dnstest.ReadFrame(c); err != nil {
			t.Fatalf("answer %d on a reused connection: %v", i, err)
		}
		time.Sleep(time.Second)
	}
}

// RFC 7766 §8: the length field and the message may arrive in separate
// segments (here: one byte at a time); the server reassembles them.
func TestRFC7766_8_LengthFieldSplit(t *testing.T) {
	f := newFakeUpstream(t, echoA)
	sp := startSpartan(t, f.Addr, nil)
	c, err := net.DialTimeout("tcp", sp.Addr.String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	q := query("split.test.", dns.TypeA, nil)
	raw := dnstest.Pack(t, q)
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(raw)))
	frame = append(frame, raw...)
	for _, b := range frame {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	r, err := dnstest.ReadFrame(c)
	if err != nil {
		t.Fatalf("no answer to a byte-by-byte query: %v", err)
	}
	if binary.BigEndian.Uint16(r) != q.Id {
		t.Errorf("wrong ID in answer")
	}
}

// sawName says whether the fake upstream has received a query for name.
func sawName(f *fakeUpstream, name string) bool {
	for _, q := range f.Seen() {
		if q.Msg != nil && q.Msg.Question[0].Name == name {
			return true
		}
	}
	return false
}
