package watchdog_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/actors/watchdog"
	wt "github.com/spartan-dns/spartan/actors/watchdog/watchdogtest"
)

func TestProbe(t *testing.T) {
	cases := []struct {
		udp, tcp wt.Mode
		// wantIn lists substrings the error must contain, wantOut ones it
		// must not; no wantIn means success.
		wantIn, wantOut []string
	}{
		{wt.Good, wt.Good, nil, nil},
		{wt.Good, wt.Absent, []string{"tcp ", "refused"}, []string{"udp "}},
		{wt.Absent, wt.Good, []string{"udp ", "refused"}, []string{"tcp "}},
		{wt.Silent, wt.Good, []string{"udp ", "timeout"}, []string{"tcp "}},
		{wt.Good, wt.Silent, []string{"tcp ", "timeout"}, []string{"udp "}},
		{wt.WrongIP, wt.Good, []string{"udp ", "no A 127.0.0.1"}, []string{"tcp "}},
		{wt.Good, wt.NXDomain, []string{"tcp ", "rcode NXDOMAIN"}, []string{"udp "}},
		{wt.ServFail, wt.ServFail, []string{"udp ", "tcp ", "SERVFAIL"}, nil},
		{wt.Absent, wt.Absent, []string{"udp ", "tcp "}, nil},
	}
	for _, c := range cases {
		t.Run(c.udp.String()+"/"+c.tcp.String(), func(t *testing.T) {
			t.Parallel()
			addr := wt.Start(t, wt.Loopback, c.udp, c.tcp)
			start := time.Now()
			err := watchdog.Probe(context.Background(), addr, 300*time.Millisecond)
			took := time.Since(start)
			if took > time.Second {
				t.Errorf("probe took %v with a 300ms timeout", took)
			}
			if len(c.wantIn) == 0 {
				if err != nil {
					t.Fatalf("Probe(%s) = %v, want success", addr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Probe(%s) succeeded, want an error", addr)
			}
			for _, s := range c.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			for _, s := range c.wantOut {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q blames %q, which works", err, s)
				}
			}
		})
	}
}

func TestProbeAddrsSkipsZeroTransport(t *testing.T) {
	udpOnly := wt.Start(t, wt.Loopback, wt.Good, wt.Absent)
	if err := watchdog.ProbeAddrs(context.Background(), udpOnly, netip.AddrPort{}, time.Second); err != nil {
		t.Fatalf("UDP-only probe: %v", err)
	}
	tcpOnly := wt.Start(t, wt.Loopback, wt.Absent, wt.Good)
	if err := watchdog.ProbeAddrs(context.Background(), netip.AddrPort{}, tcpOnly, time.Second); err != nil {
		t.Fatalf("TCP-only probe: %v", err)
	}
	if err := watchdog.ProbeAddrs(context.Background(), netip.AddrPort{}, netip.AddrPort{}, time.Second); err == nil {
		t.Fatal("probe with no transport succeeded")
	}
}

func TestProbeHonoursContext(t *testing.T) {
	addr := wt.Start(t, wt.Loopback, wt.Silent, wt.Silent)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := watchdog.Probe(ctx, addr, 10*time.Second); err == nil {
		t.Fatal("probe of silent server succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("probe ignored its context: took %v", took)
	}
}
