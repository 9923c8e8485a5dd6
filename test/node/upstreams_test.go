package node

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/netns"
)

// The shipped files together, as a node runs them: a config without
// upstream_resolvers (rel/spartan.json), the host's resolv.conf naming its
// resolver, genresolv rewriting that resolv.conf to list only Spartan, then
// Spartan restarting. Names must still resolve: genresolv saved the host's
// resolver in /etc/spartan/upstreams.conf first, and Spartan reads that.
// Without the file (the state before it existed), the restarted daemon has
// no upstreams: it says so, and `spartanctl check` fails naming why.
func TestUpstreamsSurviveGenresolv(t *testing.T) {
	n := netns.New(t, "upstr")
	// /etc/netns/NAME/spartan is bind-mounted over /etc/spartan by `ip
	// netns exec`, which needs the mount point on the host.
	if err := os.MkdirAll("/etc/spartan", 0o755); err != nil {
		t.Fatal(err)
	}
	etcSpartan := n.EtcPath(t, "spartan")
	if err := os.MkdirAll(etcSpartan, 0o755); err != nil {
		t.Fatal(err)
	}
	resolv := n.EtcPath(t, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# the host's own\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The host's resolver, inside the namespace.
	n.MustRun(t, "ip", "addr", "add", "192.0.2.53/32", "dev", "lo")
	var up *dnstest.Upstream
	if err := n.Do(func() (err error) {
		up, err = dnstest.StartAt(netip.MustParseAddrPort("192.0.2.53:53"), dnstest.Answer("10.9.9.9"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)

	// rel/spartan.json as shipped, but for what a test cannot share with
	// the host: the control socket and the HTTP port.
	var cfg map[string]any
	data, err := os.ReadFile(filepath.Join("..", "..", "rel", "spartan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, set := cfg["upstream_resolvers"]; set {
		t.Fatal("rel/spartan.json sets upstream_resolvers: this test is about the default")
	}
	// nil: harness.Start leaves the key out (the daemon's default), where
	// it would otherwise set its own (a loopback bind IP, no interface).
	for _, k := range []string{"upstream_resolvers", "bind_ips", "udp_port", "tcp_port", "interface", "master_source"} {
		if _, set := cfg[k]; !set {
			cfg[k] = nil
		}
	}
	cfg["ctl_socket"] = filepath.Join(t.TempDir(), "ctl.sock")
	cfg["http_listen"] = ""

	resolves := func(name string) string {
		out, _ := n.Run("getent", "ahostsv4", name)
		if f := strings.Fields(out); len(f) > 0 {
			return f[0]
		}
		return ""
	}
	d := startShipped(t, n, clone(cfg))
	waitCheck(t, n, d, "198.51.100.1", 15*time.Second)
	out, code := ctl(t, n, nil, "genresolv", "-config", d.ConfigPath, "/etc/resolv.conf")
	if code != 0 {
		t.Fatalf("genresolv = %d: %s", code, out)
	}
	saved, _ := os.ReadFile(filepath.Join(etcSpartan, "upstreams.conf"))
	if got := nameservers(string(saved)); !slices.Equal(got, []string{"192.0.2.53"}) {
		t.Fatalf("upstreams.conf after genresolv: %v\n%s\ngenresolv: %s", got, saved, out)
	}
	written, _ := os.ReadFile(resolv)
	if got := nameservers(string(written)); !slices.Equal(got, bindIPs) {
		t.Fatalf("resolv.conf after genresolv lists %v, want the bind IPs", got)
	}

	// The restart: the new process finds only Spartan in resolv.conf.
	if code := d.Stop(); code != 0 {
		t.Fatalf("spartan exited %d on SIGTERM", code)
	}
	d = startShipped(t, n, clone(cfg))
	waitCheck(t, n, d, "198.51.100.1", 15*time.Second)
	if got := resolves("www.example.com"); got != "10.9.9.9" {
		t.Fatalf("after genresolv and a restart, www.example.com resolves to %q, want 10.9.9.9 (via the saved upstream); log:\n%s", got, d.LogTail(20))
	}
	if out, code := ctl(t, n, nil, "check", "-config", d.ConfigPath); code != 0 {
		t.Fatalf("check = %d: %s", code, out)
	}
	// genresolv again: the saved file is the truth, never overwritten.
	if out, code := ctl(t, n, nil, "genresolv", "-config", d.ConfigPath, "/etc/resolv.conf"); code != 0 {
		t.Fatalf("genresolv = %d: %s", code, out)
	}
	if again, _ := os.ReadFile(filepath.Join(etcSpartan, "upstreams.conf")); string(again) != string(saved) {
		t.Fatalf("upstreams.conf changed by a second genresolv:\n%s", again)
	}

	// Without the file: no upstreams, and everyone is told.
	if err := os.Remove(filepath.Join(etcSpartan, "upstreams.conf")); err != nil {
		t.Fatal(err)
	}
	if code := d.Stop(); code != 0 {
		t.Fatalf("spartan exited %d on SIGTERM", code)
	}
	d = startShipped(t, n, clone(cfg))
	waitCheck(t, n, d, "198.51.100.1", 15*time.Second)
	if log := d.Log(); !strings.Contains(log, `"level":"error"`) || !strings.Contains(log, "no upstream resolvers") ||
		!strings.Contains(log, "upstream_resolvers in") || !strings.Contains(log, "/etc/spartan/upstreams.conf") {
		t.Fatalf("daemon without upstreams did not log an error naming what to set:\n%s", d.LogTail(20))
	}
	out, code = ctl(t, n, nil, "check", "-config", d.ConfigPath)
	if code != 1 || !strings.Contains(out, "no upstream resolvers") {
		t.Fatalf("check without upstreams = %d, want 1 naming the reason: %s", code, out)
	}
	if got := resolves("ready.spartan"); got != "127.0.0.1" {
		t.Fatalf("ready.spartan = %q without upstreams, want 127.0.0.1 (local zones still served)", got)
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// startShipped runs the daemon in n with cfg as given (the shipped config,
// on its default bind IPs); waitCheck tells when it serves.
func startShipped(t *testing.T, n *netns.NS, cfg map[string]any) *harness.Spartan {
	t.Helper()
	return harness.Start(t, harness.Options{NS: n, Config: cfg, LogLevel: "debug", AnyExit: true, NoWait: true})
}
