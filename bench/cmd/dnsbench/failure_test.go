package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLossRules(t *testing.T) {
	got := lossRules([]string{"127.0.1.1", "127.0.1.2"}, 53, 10)
	for _, want := range []string{
		"table ip " + lossTable + " {",
		"type filter hook input priority 0; policy accept;",
		"ip daddr { 127.0.1.1, 127.0.1.2 } udp dport 53 counter\n",
		"ip daddr { 127.0.1.1, 127.0.1.2 } udp dport 53 numgen random mod 1000 < 10 counter drop\n",
		"ip saddr { 127.0.1.1, 127.0.1.2 } udp sport 53 counter\n",
		"ip saddr { 127.0.1.1, 127.0.1.2 } udp sport 53 numgen random mod 1000 < 10 counter drop\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rules lack %q:\n%s", want, got)
		}
	}
}

// nft 1.0.6's JSON for the table lossRules writes (one direction shown per
// pair, as nft prints it), trimmed to one set of both pairs.
const nftJSON = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "dnsbench_loss", "handle": 1}},
{"chain": {"family": "ip", "table": "dnsbench_loss", "name": "in", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "ip", "table": "dnsbench_loss", "chain": "in", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"counter": {"packets": 1000, "bytes": 29000}}]}},
{"rule": {"family": "ip", "table": "dnsbench_loss", "chain": "in", "handle": 4, "expr": [{"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 1000, "offset": 0}}, "right": 10}}, {"counter": {"packets": 11, "bytes": 319}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "dnsbench_loss", "chain": "in", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "sport"}}, "right": 53}}, {"counter": {"packets": 989, "bytes": 40000}}]}},
{"rule": {"family": "ip", "table": "dnsbench_loss", "chain": "in", "handle": 6, "expr": [{"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 1000, "offset": 0}}, "right": 10}}, {"counter": {"packets": 9, "bytes": 400}}, {"drop": null}]}}]}`

func TestParseLossCounters(t *testing.T) {
	c, err := parseLossCounters([]byte(nftJSON))
	if err != nil {
		t.Fatal(err)
	}
	if c != (lossCount{seen: 1989, dropped: 20}) {
		t.Fatalf("got %+v, want seen 1989 dropped 20", c)
	}
	// A table without the four counted rules is not the one we wrote.
	short := strings.Replace(nftJSON, `{"counter": {"packets": 9, "bytes": 400}}, `, "", 1)
	if _, err := parseLossCounters([]byte(short)); err == nil {
		t.Fatal("three counted rules accepted")
	}
}

// The loss rules, loaded into a real nftables in a network namespace of
// the test's own, drop about the share asked for, each way: 10 % here, so
// that 20,000 datagrams tell 10 % from 0 % or 20 % beyond doubt.
func TestLossRulesDropTheirShare(t *testing.T) {
	if os.Getenv("DNSBENCH_LOSS_CHILD") == "1" {
		lossChild(t)
		return
	}
	for _, tool := range []string{"nft", "unshare", "ip"} {
		needTool(t, tool)
	}
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("needs root for a network namespace")
	}
	cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestLossRulesDropTheirShare$", "-test.v")
	cmd.Env = append(os.Environ(), "DNSBENCH_LOSS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in a new namespace: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// lossChild runs inside the namespace: an echo server on 127.0.1.1, the
// rules for its port, 20,000 datagrams.
func lossChild(t *testing.T) {
	if err := loopbackUp(); err != nil {
		t.Fatal(err)
	}
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, 1), Port: 5353})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_ = srv.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := srv.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				_, _ = srv.WriteTo(buf[:n], from)
			}
		}
	}()
	if err := nftApply(lossRules([]string{"127.0.1.1"}, 5353, 100)); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 1, 1), Port: 5353})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(8 << 20)
	const sent = 20000
	replies := make(chan int)
	go func() {
		n, buf := 0, make([]byte, 512)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Read(buf); err != nil {
				replies <- n
				return
			}
			n++
		}
	}()
	for i := 0; i < sent; i++ {
		// A send error would be a drop the counters do not show: the rule
		// is on the input hook so that sending never fails.
		if _, err := c.Write([]byte("query")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond) // stay within the socket buffers
		}
	}
	got := <-replies
	cnt, err := nftLossCount()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, replies %d; rules saw %d datagrams, dropped %d (%.2f%%)", sent, got, cnt.seen, cnt.dropped, cnt.pct())
	// Both ways at 10 %: 81 % of the queries come back.
	if frac := float64(got) / sent; frac < 0.78 || frac > 0.84 {
		t.Errorf("%.3f of the queries answered, want about 0.81", frac)
	}
	if p := cnt.pct(); p < 9 || p > 11 {
		t.Errorf("rules dropped %.2f%%, want about 10%%", p)
	}
	// Every datagram either way was seen: the queries, and the replies the
	// server sent (those whose query arrived).
	if cnt.seen < sent || uint64(got)+cnt.dropped > cnt.seen {
		t.Errorf("counters %+v inconsistent with %d sent and %d received", cnt, sent, got)
	}
}

func TestStutterEvents(t *testing.T) {
	var log []string
	freeze := func() { log = append(log, "stop") }
	thaw := func() { log = append(log, "cont") }
	evs := stutterEvents(10*time.Second, 3*time.Second, 300*time.Millisecond, freeze, thaw)
	want := []time.Duration{3 * time.Second, 3300 * time.Millisecond, 6 * time.Second, 6300 * time.Millisecond,
		9 * time.Second, 9300 * time.Millisecond}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, e := range evs {
		if e.at != want[i] {
			t.Errorf("event %d at %v, want %v", i, e.at, want[i])
		}
		e.fn()
	}
	if strings.Join(log, " ") != "stop cont stop cont stop cont" {
		t.Errorf("events do %v, want stop/cont pairs", log)
	}
}

func TestPerSecond(t *testing.T) {
	// 25 queries at 10 qps: seconds of 10, 10 and 5 queries. Query 3 is
	// lost, query 12 slow (150 ms), query 21 answered SERVFAIL.
	const rate = 10
	r := &loadRun{rate: rate, timeout: time.Second}
	for i := 0; i < 25; i++ {
		send := int64(i) * int64(time.Second) / rate
		lat := int64(time.Millisecond)
		rcode := int32(0)
		switch i {
		case 12:
			lat = 150 * int64(time.Millisecond)
		case 21:
			rcode = 2
		}
		recv := send + lat
		if i == 3 {
			recv, rcode = 0, noReply
		}
		r.sendNs, r.recvNs, r.rcode = append(r.sendNs, send), append(r.recvNs, recv), append(r.rcode, rcode)
	}
	got := perSecond(r, rate)
	want := []struct {
		sent      int
		ok, fast  float64
		lost, err int
	}{{10, 90, 90, 1, 0}, {10, 100, 90, 0, 0}, {5, 80, 80, 0, 1}}
	if len(got) != len(want) {
		t.Fatalf("%d seconds, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.sent != w.sent || g.okPct != w.ok || g.fastPct != w.fast || g.lost != w.lost || g.errReplies != w.err {
			t.Errorf("second %d: %+v, want %+v", i, g, w)
		}
	}
}
