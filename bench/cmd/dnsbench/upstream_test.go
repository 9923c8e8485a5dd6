package main

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// freePort finds a port free on UDP and TCP on every upstream IP; the
// tests use it instead of 53, which a real resolver on the host may hold.
func freePort(t *testing.T) int {
	t.Helper()
	for port := 25300 + time.Now().Nanosecond()%2000; port < 40000; port += 7 {
		var addrs []string
		for _, ip := range upstreamIPs {
			addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(port)))
		}
		if checkAddrs(addrs) == nil {
			return port
		}
	}
	t.Fatal("no free port on the upstream IPs")
	return 0
}

func TestUpstreamsReconcile(t *testing.T) {
	needTool(t, "nsd")
	dir := t.TempDir()
	names := zoneNames(20)
	zone := filepath.Join(dir, "zone")
	if err := writeZone(zone, names, time.Minute); err != nil {
		t.Fatal(err)
	}
	u := newUpstreams(upstreamIPs, freePort(t), dir, zone)
	defer u.close()

	answers := func(ip string) bool {
		m := new(dns.Msg)
		m.SetQuestion(names[7], dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, u.addr(ip))
		if err != nil {
			return false
		}
		a, ok := r.Answer[0].(*dns.A)
		return ok && a.A.String() == "10.0.0.7"
	}
	steps := []struct {
		kinds []upKind
		want  []bool
	}{
		{[]upKind{upNSD, upNSD, upSilent}, []bool{true, true, false}},
		{[]upKind{upNSD, upSilent, upNSD}, []bool{true, false, true}},
	}
	for i, s := range steps {
		if err := u.reconcile(s.kinds); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for j, ip := range upstreamIPs {
			if got := answers(ip); got != s.want[j] {
				t.Errorf("step %d: %s answers=%v, want %v", i, ip, got, s.want[j])
			}
		}
	}
	if len(u.nsds) != 2 {
		t.Errorf("want 2 NSDs running, got %d", len(u.nsds))
	}
	if _, err := u.cpu(); err != nil {
		t.Errorf("NSD CPU not readable: %v", err)
	}
	u.close()
	regMu.Lock()
	defer regMu.Unlock()
	if len(registry) != 0 {
		t.Fatalf("NSD processes left registered after close: %d", len(registry))
	}
}
