package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// TestDnstapFileReadByBIND: BIND's dnstap-read decodes the file Spartan
// writes, query for query: every client query over UDP and TCP shows up as
// a client query (CQ) and response (CR), and, when forwarded, as a
// forwarder query (FQ) and response (FR) naming the upstream.
func TestDnstapFileReadByBIND(t *testing.T) {
	reader := harness.RequireTool(t, "dnstap-read")
	up := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.7.7.7"))
	file := filepath.Join(t.TempDir(), "spartan.dnstap")
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"upstream_resolvers": addrs(up),
		"dnstap":             map[string]any{"file": file},
	}})
	const n = 10 // bounded load: n forwarded queries per transport, plus one local
	var names []string
	for i := range n {
		if i == n/2 {
			// The tap is an actor like the others: killed, it restarts and
			// goes on writing the same file.
			if out, err := s.Ctl("kill", "/spartan/api/dnstap"); err != nil {
				t.Fatalf("spartanctl kill /spartan/api/dnstap: %v\n%s", err, out)
			}
		}
		for _, tcp := range []bool{false, true} {
			name := fmt.Sprintf("tap%d-%v.example.", i, tcp)
			if _, err := harness.Query(s.Addr, name, dns.TypeA, tcp, 2*time.Second); err != nil {
				t.Fatalf("query %s: %v", name, err)
			}
			names = append(names, name)
		}
	}
	// A local answer (localhost: ready.spartan is also the harness's and
	// the watchdog's probe) is a client query and response, nothing more.
	if _, err := harness.Query(s.Addr, "localhost.", dns.TypeA, false, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	tree, err := s.Ctl("tree", "--json")
	if err != nil || !strings.Contains(tree, `"path": "/spartan/api/dnstap"`) {
		t.Fatalf("tree: %v\n%s", err, tree)
	}
	if code := s.Stop(); code != 0 { // the file is complete once spartan exits
		t.Fatalf("spartan exited %d:\n%s", code, s.LogTail(20))
	}
	out, err := exec.Command(reader, file).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read %s: %v\n%s", file, err, out)
	}
	// count[type][name]: how often each name appears per message type.
	count := map[string]map[string]int{}
	upstreamSeen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			t.Fatalf("dnstap-read line %q", line)
		}
		typ, name := f[2], strings.Split(f[len(f)-1], "/")[0]
		if count[typ] == nil {
			count[typ] = map[string]int{}
		}
		count[typ][name]++
		if (typ == "FQ" || typ == "FR") && strings.Contains(line, up.Addr.String()) {
			upstreamSeen++
		}
	}
	for _, name := range names {
		name = strings.TrimSuffix(name, ".")
		proto := "UDP"
		if strings.HasSuffix(name, "true.example") {
			proto = "TCP"
		}
		for _, typ := range []string{"CQ", "CR", "FQ", "FR"} {
			if count[typ][name] != 1 {
				t.Errorf("%s %s (%s): %d lines, want 1", typ, name, proto, count[typ][name])
			}
		}
	}
	if count["CQ"]["localhost"] != 1 || count["CR"]["localhost"] != 1 || count["FQ"]["localhost"] != 0 {
		t.Errorf("local localhost: CQ %d CR %d FQ %d, want 1 1 0", count["CQ"]["localhost"], count["CR"]["localhost"], count["FQ"]["localhost"])
	}
	if upstreamSeen != 4*n {
		t.Errorf("%d forwarder lines name the upstream %s, want %d", upstreamSeen, up.Addr, 4*n)
	}
	if t.Failed() {
		t.Logf("dnstap-read:\n%s", out)
	}
}
