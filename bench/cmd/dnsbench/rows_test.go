package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/spartan-dns/spartan/actors/config"
)

// The config the harness writes for each Spartan row, with its cache off
// (the miss path) and on (scenarios 8 and 9), must be one Spartan accepts,
// forwarding to the upstreams the row is meant to race.
func TestSpartanRowConfigs(t *testing.T) {
	ups := []string{"127.0.1.1:53", "127.0.1.2:53", "127.0.1.3:53"}
	for _, tc := range []struct {
		row   string
		cache bool
		want  []string
	}{
		{"spartan", false, ups},
		{"spartan-1up", false, ups[:1]},
		{"spartan", true, ups},
		{"spartan-1up", true, ups[:1]},
	} {
		e := &rowEnv{dir: t.TempDir(), upstreams: ups, listenPort: 5300, spartanBin: "/nonexistent/spartan", cache: tc.cache}
		t.Run(fmt.Sprintf("%s/cache=%v", tc.row, tc.cache), func(t *testing.T) {
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
			// The cache key as written, on or off as the scenario wants
			// (the loader's own type for it is the cache branch's).
			raw, err := os.ReadFile(argv[ci+1])
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Cache map[string]any `json:"cache"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Cache["enabled"] != tc.cache {
				t.Errorf("cache.enabled %v, want %v", doc.Cache["enabled"], tc.cache)
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
