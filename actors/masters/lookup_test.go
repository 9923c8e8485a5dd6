package masters

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/dnstest"

	"github.com/miekg/dns"
)

// deadUDP returns an address on 127.0.0.1 where nothing listens, so a query
// there fails at once with "connection refused".
func deadUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	return addr
}

func TestUpstreamLookup(t *testing.T) {
	good := startDNS(t, map[string][]string{
		"master-1.test": {"10.0.0.1"},
		"multi.test":    {"10.0.0.3", "10.0.0.2"},
	})
	good.setRcode("nodata.test", dns.RcodeSuccess)
	broken := startDNS(t, nil)
	broken.setRcode("master-1.test", dns.RcodeServerFailure)
	broken.setRcode("refused.test", dns.RcodeRefused)
	dead := deadUDP(t)
	silent := dnstest.Start(t, "127.0.0.1", dnstest.Silent()).Addr

	tests := []struct {
		name      string
		upstreams []netip.AddrPort
		host      string
		want      []string
		wantErr   string
	}{
		{name: "answer", upstreams: []netip.AddrPort{good.addr}, host: "master-1.test", want: []string{"10.0.0.1"}},
		{name: "fqdn and case", upstreams: []netip.AddrPort{good.addr}, host: "MASTER-1.test.", want: []string{"10.0.0.1"}},
		{name: "several A", upstreams: []netip.AddrPort{good.addr}, host: "multi.test", want: []string{"10.0.0.3", "10.0.0.2"}},
		{name: "refused port then good", upstreams: []netip.AddrPort{dead, good.addr}, host: "master-1.test", want: []string{"10.0.0.1"}},
		{name: "silent then good", upstreams: []netip.AddrPort{silent, good.addr}, host: "master-1.test", want: []string{"10.0.0.1"}},
		{name: "servfail then good", upstreams: []netip.AddrPort{broken.addr, good.addr}, host: "master-1.test", want: []string{"10.0.0.1"}},
		{name: "nxdomain is final", upstreams: []netip.AddrPort{good.addr, broken.addr}, host: "nope.test", wantErr: "NXDOMAIN"},
		{name: "no A records", upstreams: []netip.AddrPort{good.addr}, host: "nodata.test", wantErr: "no A records"},
		{name: "all fail", upstreams: []netip.AddrPort{dead, broken.addr}, host: "refused.test", wantErr: "REFUSED"},
		{name: "no upstreams", upstreams: nil, host: "master-1.test", wantErr: "no upstream resolvers"},
		{name: "ip literal needs no upstream", upstreams: nil, host: "10.9.9.9", want: []string{"10.9.9.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := UpstreamLookup(tt.upstreams, 300*time.Millisecond)
			got, err := lookup(context.Background(), tt.host)
			checkErr(t, err, tt.wantErr)
			if err != nil && !strings.Contains(err.Error(), tt.host) {
				t.Errorf("error %q does not name the host %q", err, tt.host)
			}
			if !equalIPs(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUpstreamLookupHonoursContext(t *testing.T) {
	silent := dnstest.Start(t, "127.0.0.1", dnstest.Silent()).Addr
	lookup := UpstreamLookup([]netip.AddrPort{silent, silent, silent}, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := lookup(ctx, "master-1.test"); err == nil {
		t.Fatal("lookup against silent upstreams succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("lookup took %v after its context ended", d)
	}
}
