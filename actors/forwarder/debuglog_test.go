package forwarder_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDebugLogOfFailedQuery: at debug level a query without a good reply
// is logged with every upstream tried and what it did; at info, nothing.
func TestDebugLogOfFailedQuery(t *testing.T) { bothEngines(t, testDebugLogOfFailedQuery) }

func testDebugLogOfFailedQuery(t *testing.T, handle handleFunc) {
	sf := dnstest.Start(t, "127.0.0.1", dnstest.Rcode(dns.RcodeServerFailure))
	silent := dnstest.Start(t, "127.0.0.1", dnstest.Silent())
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel} {
		cfg := config.Default()
		cfg.UpstreamTimeout = 300 * time.Millisecond
		cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, sf.Addr, silent.Addr)
		var buf syncBuf
		f := forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.New(&buf).Level(level))
		f.LoserGrace = 100 * time.Millisecond
		_, qb := query(t, "nothing-good.example.", dns.TypeAAAA)
		if r := unpack(t, handle(t, f, qb)); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %d, want the upstream's SERVFAIL", r.Rcode)
		}
		out := buf.String()
		if level != zerolog.DebugLevel {
			if out != "" {
				t.Errorf("at %v the forwarder logged:\n%s", level, out)
			}
			continue
		}
		var line struct {
			Name, Qtype, Outcome, Message string
			Upstreams                     []string
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &line); err != nil {
			t.Fatalf("want one JSON line, got %q: %v", out, err)
		}
		want := []string{sf.Addr.String() + ": replied SERVFAIL", silent.Addr.String() + ": no reply before upstream_timeout"}
		slices.Sort(line.Upstreams)
		slices.Sort(want)
		if line.Name != "nothing-good.example." || line.Qtype != "AAAA" || line.Outcome != "upstream_error" || !slices.Equal(line.Upstreams, want) {
			t.Errorf("logged %+v, want name, qtype AAAA, outcome upstream_error and upstreams %q", line, want)
		}
	}
}
