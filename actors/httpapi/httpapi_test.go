package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
	"github.com/spartan-dns/spartan/test/dnstest"
)

func rr(s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return r
}

// zoneHandler answers from a small zone of example.:
//
//	web.example.        A 10.0.0.1, A 10.0.0.2, AAAA fd00::1
//	alias.example.      CNAME web.example. (+ its A records)
//	v6.example.         AAAA fd00::6 only
//	empty.example.      exists, no records
//	fail.example.       SERVFAIL
//	_web._tcp.example.  SRV 80 web.example., SRV 5432 db.example. (db's A in the additional section),
//	                    SRV 9 gone.example. (which does not resolve)
//	_none._tcp.example. exists, no SRV
//
// Anything else is NXDOMAIN.
func zoneHandler(q *dns.Msg, tcp bool) dnstest.Reply {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	name, qt := strings.ToLower(q.Question[0].Name), q.Question[0].Qtype
	add := func(t uint16, recs ...string) {
		if qt == t {
			for _, s := range recs {
				m.Answer = append(m.Answer, rr(s))
			}
		}
	}
	switch name {
	case "web.example.":
		add(dns.TypeA, "web.example. 60 IN A 10.0.0.1", "web.example. 60 IN A 10.0.0.2")
		add(dns.TypeAAAA, "web.example. 60 IN AAAA fd00::1")
	case "alias.example.":
		if qt == dns.TypeA || qt == dns.TypeAAAA {
			m.Answer = append(m.Answer, rr("alias.example. 60 IN CNAME web.example."))
		}
		add(dns.TypeA, "web.example. 60 IN A 10.0.0.1")
	case "v6.example.":
		add(dns.TypeAAAA, "v6.example. 60 IN AAAA fd00::6")
	case "empty.example.", "_none._tcp.example.":
	case "fail.example.":
		m.Rcode = dns.RcodeServerFailure
	case "_web._tcp.example.":
		add(dns.TypeSRV, "_web._tcp.example. 60 IN SRV 0 0 80 web.example.",
			"_web._tcp.example. 60 IN SRV 0 0 5432 db.example.",
			"_web._tcp.example. 60 IN SRV 0 0 9 gone.example.")
		m.Extra = append(m.Extra, rr("db.example. 60 IN A 10.0.0.9"))
	default:
		m.Rcode = dns.RcodeNameError
	}
	return dnstest.Reply{Msg: m}
}

type env struct {
	store *state.Store
	reg   *state.Registry
	fwd   *forwarder.Forwarder
	up    *dnstest.Upstream
	srv   *Server
	m     *Metrics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	up := dnstest.Start(t, "127.0.0.1", zoneHandler)
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{up.Addr}
	cfg.BindIPs = []netip.Addr{netip.MustParseAddr("127.0.0.53")}
	cfg.UpstreamTimeout = 2 * time.Second
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	fwd := forwarder.New(store, zerolog.Nop())
	e := &env{store: store, reg: reg, fwd: fwd, up: up}
	e.m = NewMetrics(Sources{Store: store, Forwarder: fwd, TCPRefused: func() uint64 { return 7 }, TCPOpen: func() int64 { return 3 }})
	e.srv = New(Options{Version: "1.2.3", Store: store, Forwarder: fwd, Metrics: e.m}, zerolog.Nop())
	return e
}

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if ct := w.Header().Get("Content-Type"); w.Code != http.StatusOK || path != "/metrics" {
		if ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return w.Code, w.Body.String()
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	code, body := get(t, e.srv.Handler(), "GET", "/v1/version")
	if code != 200 || strings.TrimSpace(body) != `{"Service":"Spartan","Version":"1.2.3"}` {
		t.Errorf("version: %d %s", code, body)
	}
}

func decodeHosts(t *testing.T, body string) []string {
	t.Helper()
	var hs []Host
	if err := json.Unmarshal([]byte(body), &hs); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var out []string
	for _, h := range hs {
		out = append(out, h.Host+" "+h.IP)
	}
	sort.Strings(out)
	return out
}

func TestHosts(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		host string
		code int
		want string // hosts joined by "," for 200, a part of the error otherwise
	}{
		{"web.example", 200, "web.example. 10.0.0.1,web.example. 10.0.0.2,web.example. fd00::1"},
		{"WEB.example.", 200, "WEB.example. 10.0.0.1,WEB.example. 10.0.0.2,WEB.example. fd00::1"},
		{"alias.example", 200, "alias.example. 10.0.0.1"},
		{"v6.example", 200, "v6.example. fd00::6"},
		{"ready.spartan", 200, "ready.spartan. 127.0.0.1"}, // local zones go through the same routing
		{"localhost", 200, "localhost. 127.0.0.1,localhost. ::1"},
		{"nx.example", 404, "NXDOMAIN"},
		{"empty.example", 404, "no A or AAAA records"},
		{"fail.example", 502, "SERVFAIL"},
		{"no-masters.mesos", 502, "SERVFAIL"},
		{"bad..name", 400, "bad host name"},
		{strings.Repeat("a", 64) + ".example", 400, "bad host name"},
		{"sp%20ace.example", 400, "bad host name"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			code, body := get(t, e.srv.Handler(), "GET", "/v1/hosts/"+tc.host)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if code == 200 {
				if got := strings.Join(decodeHosts(t, body), ","); got != tc.want {
					t.Errorf("hosts = %s, want %s", got, tc.want)
				}
				return
			}
			var er struct{ Error string }
			if err := json.Unmarshal([]byte(body), &er); err != nil || !strings.Contains(er.Error, tc.want) {
				t.Errorf("error body %s, want one mentioning %q", body, tc.want)
			}
		})
	}
}

func TestServices(t *testing.T) {
	e := newEnv(t)
	code, body := get(t, e.srv.Handler(), "GET", "/v1/services/_web._tcp.example")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var ss []Service
	if err := json.Unmarshal([]byte(body), &ss); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range ss {
		got = append(got, fmt.Sprintf("%s %s %d %s", s.Service, s.Host, s.Port, s.IP))
	}
	sort.Strings(got)
	want := []string{
		"_web._tcp.example. db.example. 5432 10.0.0.9",
		"_web._tcp.example. gone.example. 9 ",
		"_web._tcp.example. web.example. 80 10.0.0.1",
		"_web._tcp.example. web.example. 80 10.0.0.2",
		"_web._tcp.example. web.example. 80 fd00::1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("services:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// db.example came in the additional section: never asked upstream.
	for _, s := range e.up.Seen() {
		if s.Name == "db.example." {
			t.Errorf("db.example. was looked up although the SRV reply carried its address")
		}
	}
	// The raw JSON has the spec's keys, port a number.
	var raw []map[string]any
	_ = json.Unmarshal([]byte(body), &raw)
	if _, ok := raw[0]["port"].(float64); !ok || raw[0]["host"] == nil || raw[0]["service"] == nil || raw[0]["ip"] == nil {
		t.Errorf("entry %v", raw[0])
	}

	for _, tc := range []struct {
		svc  string
		code int
	}{{"_none._tcp.example", 404}, {"_nx._tcp.example", 404}, {"fail.example", 502}, {"a..b", 400}} {
		if code, body := get(t, e.srv.Handler(), "GET", "/v1/services/"+tc.svc); code != tc.code || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want %d", tc.svc, code, body, tc.code)
		}
	}
}

func TestRecords(t *testing.T) {
	e := newEnv(t)
	snap := e.store.Load()
	e.store.Publish(state.Build(snap.Config, []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")}, e.reg))
	code, body := get(t, e.srv.Handler(), "GET", "/v1/records")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var recs []Record
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[fmt.Sprintf("%s %s %d %s", r.Name, r.Type, r.TTL, r.Value)] = true
	}
	for _, w := range []string{
		"ready.spartan. A 5 127.0.0.1",
		"ns.spartan. A 5 127.0.0.53",
		"zk-1.zk. A 5 10.1.0.1",
		"zk-2.zk. A 5 10.1.0.2",
		"zk-3.zk. A 5 10.1.0.1",
		"zk-5.zk. A 5 10.1.0.1",
		"localhost. AAAA 5 ::1",
		"spartan. NS 5 ns.spartan.",
	} {
		if !have[w] {
			t.Errorf("no record %q in %s", w, body)
		}
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	e := newEnv(t)
	h := e.srv.Handler()
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/v1/hosts/web.example", 405},
		{"DELETE", "/v1/records", 405},
		{"PUT", "/v1/version", 405},
		{"POST", "/v1/services/_web._tcp.example", 405},
		{"POST", "/metrics", 405},
		{"GET", "/v1/nope", 404},
		{"GET", "/", 404},
		{"HEAD", "/v1/version", 200},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, w.Code, tc.code)
		}
		if tc.code == 405 && !strings.Contains(w.Header().Get("Allow"), "GET") {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, w.Header().Get("Allow"))
		}
		if tc.code >= 400 && !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%s %s: body %q is not a JSON error", tc.method, tc.path, w.Body.String())
		}
	}
}

// metric finds one sample in a gathered registry by name and labels.
func metric(t *testing.T, fams []*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if len(m.Label) != len(labels) {
				continue
			}
			return m
		}
	}
	return nil
}

func TestCollector(t *testing.T) {
	e := newEnv(t)
	query := func(name string) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		q, _ := m.Pack()
		if e.fwd.Handle(q, false) == nil {
			t.Fatalf("no reply for %s", name)
		}
	}
	for range 3 {
		query("ready.spartan.")
	}
	query("web.example.")
	query("nx.example.")
	query("x.mesos.")     // no masters: SERVFAIL
	query("web.example.") // from the cache
	e.fwd.Stats.Race.Hedges.Add(8)
	e.fwd.Stats.Race.EscalationWins.Add(9)
	u := e.reg.Get(e.up.Addr)
	u.Failures.Add(5)
	u.Stalls.Add(6)
	// Real shedding, as a listener meets it: with handler_limit 1 and one
	// query in flight, the next four are refused a slot (and counted).
	limited := *e.store.Load().Config
	limited.HandlerLimit = 1
	e.store.Publish(state.Build(&limited, nil, e.reg))
	if e.fwd.Begin() == nil {
		t.Fatal("Begin refused the first query under handler_limit 1")
	}
	defer e.fwd.End()
	for range 4 {
		if e.fwd.Begin() != nil {
			t.Fatal("Begin granted a slot over handler_limit")
		}
	}
	e.store.Publish(state.Build(e.store.Load().Config, []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")}, e.reg))

	fams, err := e.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	upl := map[string]string{"upstream": e.up.Addr.String()}
	tests := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"spartan_queries_total", map[string]string{"route": "local", "outcome": "local"}, 3},
		{"spartan_queries_total", map[string]string{"route": "default", "outcome": "upstream"}, 2},
		{"spartan_queries_total", map[string]string{"route": "mesos", "outcome": "servfail"}, 1},
		{"spartan_queries_total", map[string]string{"route": "zone", "outcome": "upstream"}, 0}, // exported at 0
		{"spartan_upstream_replies_total", upl, 2},
		{"spartan_upstream_failures_total", upl, 5},
		{"spartan_upstream_stalls_total", upl, 6},
		{"spartan_upstream_health_score", upl, 0},
		{"spartan_shed_queries_total", nil, 4},
		{"spartan_tcp_connections_refused_total", nil, 7},
		{"spartan_tcp_connections_open", nil, 3},
		{"spartan_queries_in_flight", nil, 1},
		{"spartan_masters", nil, 2},
		{"spartan_masters_last_read_timestamp_seconds", nil, 0}, // no masters watcher
		{"spartan_race_extra_attempts_total", map[string]string{"reason": "hedge"}, 8},
		{"spartan_race_extra_attempts_total", map[string]string{"reason": "escalation"}, 0},
		{"spartan_race_wins_total", map[string]string{"attempt": "escalation"}, 9},
		{"spartan_race_wins_total", map[string]string{"attempt": "hedge"}, 0},
		{"spartan_queries_total", map[string]string{"route": "default", "outcome": "cache"}, 1},
		{"spartan_cache_hits_total", nil, 1},
		{"spartan_cache_misses_total", nil, 2}, // web, nx (x.mesos has no upstream to cache from)
		{"spartan_cache_entries", nil, float64(e.fwd.Cache.Stats().Entries)},
		{"spartan_cache_stale_total", nil, 0},
		{"spartan_cache_prefetches_total", nil, 0},
		{"spartan_cache_coalesced_total", nil, 0},
		{"spartan_cache_evictions_total", nil, 0},
	}
	if e.fwd.Cache.Stats().Entries < 1 || e.fwd.Cache.Stats().Bytes <= 0 {
		t.Errorf("cache stats %+v: want web.example. cached", e.fwd.Cache.Stats())
	}
	for _, tc := range tests {
		m := metric(t, fams, tc.name, tc.labels)
		if m == nil {
			t.Errorf("no %s%v", tc.name, tc.labels)
			continue
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		}
		if v != tc.value {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, v, tc.value)
		}
	}
	if m := metric(t, fams, "spartan_queries_total", map[string]string{"route": "local", "outcome": "upstream"}); m != nil {
		t.Error("impossible series local/upstream exported")
	}
	if a := metric(t, fams, "spartan_answer_latency_seconds", nil); a == nil || a.Histogram.GetSampleCount() != 2 {
		t.Errorf("answer latency histogram = %v, want the 2 upstream answers", a)
	}
	h := metric(t, fams, "spartan_upstream_latency_seconds", upl)
	if h == nil || h.Histogram == nil {
		t.Fatal("no latency histogram")
	}
	if h.Histogram.GetSampleCount() != 2 || h.Histogram.GetSampleSum() <= 0 || len(h.Histogram.Bucket) != len(state.LatencyBuckets) {
		t.Errorf("latency histogram = %v", h.Histogram)
	}
	if b := h.Histogram.Bucket[len(h.Histogram.Bucket)-1]; b.GetUpperBound() != 5 || b.GetCumulativeCount() != 2 {
		t.Errorf("top bucket = %v", b)
	}
	for _, std := range []string{"go_goroutines", "process_open_fds"} {
		if metric(t, fams, std, nil) == nil {
			t.Errorf("no %s", std)
		}
	}
}

func TestRestartMetric(t *testing.T) {
	m := NewMetrics(Sources{})
	opts := supervisor.Options{Timeout: time.Second, FailureBackoff: 100 * time.Millisecond}
	tree := supervisor.New("s", opts, zerolog.Nop())
	tree.Root().Supervisor("g", opts).Actor("a", idleActor{})
	m.Watch(tree)
	value := func(path string) float64 {
		fams, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		s := metric(t, fams, "spartan_actor_restarts_total", map[string]string{"path": path})
		if s == nil {
			return -1
		}
		return s.Counter.GetValue()
	}
	for _, p := range []string{"/s", "/s/g", "/s/g/a"} {
		if v := value(p); v != 0 {
			t.Errorf("%s restarts = %v before start, want 0", p, v)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	kills := 0
	for kills < 2 && time.Now().Before(deadline) {
		if value("/s/g/a") == float64(kills) && tree.Kill("/s/g/a") == nil {
			kills++
		}
		time.Sleep(10 * time.Millisecond)
	}
	for value("/s/g/a") != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if v := value("/s/g/a"); v != 2 {
		t.Errorf("restarts = %v after 2 kills", v)
	}
}

type idleActor struct{}

func (idleActor) Serve(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// The actor serves the same handler on a real socket, returns promptly on
// cancel, and binds again when restarted.
func TestServe(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e.srv.opts.Addr = addr

	for run := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.srv.Serve(ctx) }()
		var body string
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: %v", run, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, name := range []string{"spartan_queries_total", "spartan_upstream_latency_seconds_bucket", "spartan_masters", "go_goroutines", "process_open_fds"} {
			if !strings.Contains(body, name) {
				t.Errorf("run %d: /metrics lacks %s", run, name)
			}
		}
		// An idle keep-alive connection must not hold Serve up.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("run %d: Serve = %v", run, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("run %d: Serve did not return", run)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("run %d: Serve took %v to return", run, d)
		}
		c.Close()
	}
}
