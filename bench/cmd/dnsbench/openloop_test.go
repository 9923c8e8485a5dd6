package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeServer answers NOERROR, except that it drops queries for names[0]
// and answers SERVFAIL for names[1], so lost and error counts are exact.
func fakeServer(t *testing.T, names []string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil || len(m.Question) != 1 {
				continue
			}
			switch m.Question[0].Name {
			case names[0]:
				continue
			case names[1]:
				m.SetRcode(m, dns.RcodeServerFailure)
			default:
				m.SetReply(m)
			}
			out, _ := m.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestOpenLoopCountsEveryOutcome(t *testing.T) {
	names := zoneNames(10)
	qs, err := packQueries(names)
	if err != nil {
		t.Fatal(err)
	}
	spec := loadSpec{addr: fakeServer(t, names), rate: 2000, dur: 500 * time.Millisecond,
		timeout: 300 * time.Millisecond, sockets: 4, queries: qs}
	fired := make(chan time.Duration, 1)
	start := time.Now()
	spec.events = []loadEvent{{at: 200 * time.Millisecond, fn: func() { fired <- time.Since(start) }}}
	run, err := runOpenLoop(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	n := len(run.sendNs)
	if n != 1000 {
		t.Fatalf("scheduled %d queries, want 1000", n)
	}
	// The schedule is fixed: the last query leaves at about dur.
	if last := time.Duration(run.sendNs[n-1]); last < 450*time.Millisecond || last > 800*time.Millisecond {
		t.Errorf("last query sent at %v, want about 500ms", last)
	}
	sum := summarize(run.latencies(0, n), run.errorReplies(0, n))
	if sum.okPct != 80 || sum.errReplies != 100 {
		t.Errorf("ok %.2f%% errors %d, want 80%% and 100", sum.okPct, sum.errReplies)
	}
	select {
	case at := <-fired:
		if at < 200*time.Millisecond {
			t.Errorf("event fired at %v, before its time", at)
		}
	default:
		t.Error("event never fired")
	}
}

func TestSilentUpstreamNeverAnswers(t *testing.T) {
	s, err := listenSilent("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := s.udp.LocalAddr().String()
	tcpAddr := s.tcp.Addr().String()
	m := new(dns.Msg)
	m.SetQuestion("x.bench.test.", dns.TypeA)
	for _, c := range []struct{ net, addr string }{{"udp", udpAddr}, {"tcp", tcpAddr}} {
		cl := &dns.Client{Net: c.net, Timeout: 200 * time.Millisecond}
		if _, _, err := cl.Exchange(m, c.addr); err == nil {
			t.Errorf("%s: silent upstream answered", c.net)
		}
	}
	done := make(chan struct{})
	go func() { s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("close hangs: a connection goroutine leaked")
	}
}
