package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"google.golang.org/protobuf/proto"
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
	// Asked again, the first two names are answered from the cache: a
	// client query and response each, no forwarder messages, and the
	// response marked as the cache's (the frame's extra field).
	for _, name := range names[:2] {
		if _, err := harness.Query(s.Addr, name, dns.TypeA, strings.Contains(name, "true"), 2*time.Second); err != nil {
			t.Fatalf("query %s again: %v", name, err)
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
	for i, name := range names {
		name = strings.TrimSuffix(name, ".")
		proto := "UDP"
		if strings.HasSuffix(name, "true.example") {
			proto = "TCP"
		}
		for _, typ := range []string{"CQ", "CR", "FQ", "FR"} {
			want := 1
			if i < 2 && (typ == "CQ" || typ == "CR") {
				want = 2 // asked twice, the second time answered from the cache
			}
			if count[typ][name] != want {
				t.Errorf("%s %s (%s): %d lines, want %d", typ, name, proto, count[typ][name], want)
			}
		}
	}
	// dnstap-read does not print the extra field: read the frames here.
	if got := cachedResponses(t, file); got != 2 {
		t.Errorf("%d client responses marked as answered from the cache (extra %q), want 2 (one per transport)", got, "cache")
	}
	if t.Failed() {
		t.Logf("dnstap-read:\n%s", out)
	}
}

// cachedResponses counts the CLIENT_RESPONSE frames of the dnstap file
// whose extra field marks them as answered from the cache.
func cachedResponses(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := framestream.NewReader(f, &framestream.ReaderOptions{ContentTypes: [][]byte{dnstap.FSContentType}})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	buf := make([]byte, 65536)
	n := 0
	for {
		size, err := r.ReadFrame(buf)
		if err != nil {
			return n // EOF: the stream's end
		}
		var d dnstap.Dnstap
		if err := proto.Unmarshal(buf[:size], &d); err != nil {
			t.Fatalf("%s: frame: %v", file, err)
		}
		if d.GetMessage().GetType() == dnstap.Message_CLIENT_RESPONSE && string(d.GetExtra()) == "cache" {
			n++
		}
	}
}
