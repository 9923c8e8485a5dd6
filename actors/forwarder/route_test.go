package forwarder

import (
	"net/netip"
	"testing"

	"github.com/spartan-dns/spartan/actors/config"

	"github.com/spartan-dns/spartan/actors/state"
)

func TestRoute(t *testing.T) {
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	cfg.ForwardZones = map[string][]netip.AddrPort{
		"example.com.":    {netip.MustParseAddrPort("127.0.0.2:53")},
		"a.example.com.":  {netip.MustParseAddrPort("127.0.0.3:53")},
		"marathon.mesos.": {netip.MustParseAddrPort("127.0.0.4:53")},
	}
	reg := state.NewRegistry()
	snap := state.Build(cfg, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, reg)

	tests := []struct {
		name      string
		kind      RouteKind
		route     string
		localZone string
	}{
		{"ready.spartan.", RouteLocal, "", "spartan."},
		{"anything.spartan.", RouteLocal, "", "spartan."},
		{"localhost.", RouteLocal, "", "localhost."},
		{"zk-3.zk.", RouteLocal, "", "zk."},
		{"leader.mesos.", RouteMesos, "mesos", ""},
		{"app.marathon.mesos.", RouteMesos, "mesos", ""}, // the spec's table: *.mesos before forward_zones
		{"www.example.com.", RouteZone, "example.com.", ""},
		{"example.com.", RouteZone, "example.com.", ""},
		{"x.a.example.com.", RouteZone, "a.example.com.", ""},
		{"notexample.com.", RouteDefault, "default", ""},
		{"spartan.io.", RouteDefault, "default", ""},
		{"mesos.example.org.", RouteDefault, "default", ""},
		{".", RouteDefault, "default", ""},
	}
	for _, tc := range tests {
		if z := localZone(tc.name); z != tc.localZone {
			t.Errorf("%s: local zone %q, want %q", tc.name, z, tc.localZone)
		}
		if tc.localZone != "" {
			continue
		}
		kind, r := RouteFor(snap, tc.name)
		if kind != tc.kind || r.Name != tc.route {
			t.Errorf("%s: route %v/%s, want %v/%s", tc.name, kind, r.Name, tc.kind, tc.route)
		}
	}
	if got := snap.Mesos.Upstreams[0].Addr.String(); got != "10.0.0.1:61053" {
		t.Errorf("mesos upstream %s", got)
	}
}

func TestZKRecords(t *testing.T) {
	m := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	tests := []struct {
		masters []netip.Addr
		want    []netip.Addr
	}{
		{nil, nil},
		{m("10.0.0.1"), m("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1")},
		{m("10.0.0.1", "10.0.0.2", "10.0.0.3"), m("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2")},
		{m("1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6"), m("1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5")},
	}
	for _, tc := range tests {
		snap := state.Build(config.Default(), tc.masters, state.NewRegistry())
		if len(snap.ZK) != len(tc.want) {
			t.Fatalf("%v: zk %v", tc.masters, snap.ZK)
		}
		for i := range tc.want {
			if snap.ZK[i] != tc.want[i] {
				t.Errorf("%v: zk-%d = %v, want %v", tc.masters, i+1, snap.ZK[i], tc.want[i])
			}
		}
	}
}
