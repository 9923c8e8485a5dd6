package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/spartan-dns/spartan/actors/config"
)

// The config the harness writes for each Spartan row must be one Spartan
// accepts, forwarding to the upstreams the row is meant to race.
func TestSpartanRowConfigs(t *testing.T) {
	e := &rowEnv{dir: t.TempDir(), upstreams: []string{"127.0.1.1:53", "127.0.1.2:53", "127.0.1.3:53"},
		listenPort: 5300, spartanBin: "/nonexistent/spartan"}
	for _, tc := range []struct {
		row  string
		want []string
	}{
		{"spartan", e.upstreams},
		{"spartan-1up", e.upstreams[:1]},
	} {
		t.Run(tc.row, func(t *testing.T) {
			i := slices.IndexFunc(allRows, func(r *row) bool { return r.name == tc.row })
			if i < 0 {
				t.Fatalf("no row %q", tc.row)
			}
			r := allRows[i]
			argv, err := r.argv(e, r)
			if err != nil {
				t.Fatal(err)
			}
			ci := slices.Index(argv, "-config")
			if ci < 0 || ci+1 >= len(argv) {
				t.Fatalf("argv %q has no -config", argv)
			}
			c, err := config.LoadWith(argv[ci+1], func(string) string { return "" }, "")
			if err != nil {
				t.Fatalf("Spartan rejects the row's config: %v", err)
			}
			var got []string
			for _, u := range c.UpstreamResolvers {
				got = append(got, u.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("upstreams %q, want %q", got, tc.want)
			}
			if want := []netip.Addr{netip.MustParseAddr(r.ip)}; !slices.Equal(c.BindIPs, want) {
				t.Errorf("bind IPs %v, want %v", c.BindIPs, want)
			}
		})
	}
}
