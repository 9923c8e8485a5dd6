package main

import (
	"slices"
	"testing"
	"time"
)

// Output of dnsperf 2.10.0 (Debian), trimmed to what the parser reads.
const dnsperfOut = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.1.1 -p 53 -d q.txt -c 20 -q 200 -l 3 -t 2
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         232230
  Queries completed:    232201 (99.99%)
  Queries lost:         29 (0.01%)

  Response codes:       NOERROR 232190 (100.00%), SERVFAIL 11 (0.00%)
  Average packet size:  request 37, response 53
  Run time (s):         3.000102
  Queries per second:   77398.043

  Average Latency (s):  0.001958 (min 0.000021, max 0.051003)
  Latency StdDev (s):   0.001203
`

func TestParseDNSPerf(t *testing.T) {
	r, err := parseDNSPerf(dnsperfOut)
	if err != nil {
		t.Fatal(err)
	}
	want := perfResult{sent: 232230, completed: 232201, lost: 29, qps: 77398.043, avgLatency: 0.001958, noerror: 232190}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if _, err := parseDNSPerf("Error: could not open file\n"); err == nil {
		t.Fatal("output without statistics must be an error")
	}
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and ')' (NSD renames its children
	// "nsd: server 1"); fields are counted from the last ')'.
	line := "4242 (nsd: server (1)) S 4240 4240 4240 0 -1 4194560 520 0 0 0 17 9 0 0 20 0 1 0 100 1000 200"
	f, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if f.pgrp != 4240 || f.utime != 17 || f.stime != 9 {
		t.Fatalf("got %+v", f)
	}
	if _, err := parseStat("garbage"); err == nil {
		t.Fatal("malformed line must be an error")
	}
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(*options) bool
	}{
		{"defaults", nil, false, func(o *options) bool {
			return o.rounds == 2 && len(o.rows) == 6 && len(o.scenarios) == 9 && o.failDur == 30*time.Second &&
				o.lossPct == 1 && o.stutterPeriod == 3*time.Second && o.stutterPause == 300*time.Millisecond &&
				o.downDur == 90*time.Second && o.ttl == time.Minute && o.netns
		}},
		{"subset", []string{"--rows", "direct,spartan", "--scenarios", "6,7", "--fail-duration", "3s", "--netns=false"}, false, func(o *options) bool {
			return slices.Equal(o.rows, []string{"direct", "spartan"}) && slices.Equal(o.scenarios, []int{6, 7}) &&
				o.failDur == 3*time.Second && !o.netns
		}},
		{"quick shortens", []string{"--quick"}, false, func(o *options) bool {
			return o.satDur == 3*time.Second && o.failDur == 8*time.Second && o.timeout == 5*time.Second &&
				o.ttl == 4*time.Second && o.downDur == 10*time.Second
		}},
		{"explicit flag beats quick", []string{"--quick", "--fail-duration", "12s"}, false, func(o *options) bool {
			return o.failDur == 12*time.Second && o.freezeAt == 3*time.Second
		}},
		{"unknown row", []string{"--rows", "direct,bind"}, true, nil},
		{"bad scenario", []string{"--scenarios", "10"}, true, nil},
		{"outage within the TTL", []string{"--ttl", "60s", "--down-duration", "50s"}, true, nil},
		{"stutter longer than its period", []string{"--stutter-pause", "3s"}, true, nil},
		{"loss beyond 100 %", []string{"--loss-pct", "101"}, true, nil},
		{"freeze after end", []string{"--fail-duration", "5s", "--freeze-at", "6s"}, true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseFlags(c.args)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if err == nil && !c.check(o) {
				t.Fatalf("unexpected options %+v", o)
			}
		})
	}
}

func TestParseCPULine(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice, in ticks.
	c, err := parseCPULine("cpu  1000 50 400 8000 100 20 30 7 0 0")
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuTimes{busy: 15, idle: 81, steal: 0.07}); c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 x 4 5 6 7 8"} {
		if _, err := parseCPULine(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
