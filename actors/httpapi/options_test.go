package httpapi

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestPprofOnlyWhenAsked: /debug/pprof/ is served only with http_pprof; a
// profile on demand can burn the node's CPU and a heap can leak names.
func TestPprofOnlyWhenAsked(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		pprof bool
		code  int
	}{{false, 404}, {true, 200}} {
		opts := e.srv.opts
		opts.Pprof = tc.pprof
		h := New(opts, zerolog.Nop()).Handler()
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/symbol"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			if w.Code != tc.code {
				t.Errorf("http_pprof=%v: GET %s = %d, want %d", tc.pprof, path, w.Code, tc.code)
			}
		}
	}
}

// TestMastersLastReadMetric: the gauge is the watcher's last good read, in
// Unix seconds.
func TestMastersLastReadMetric(t *testing.T) {
	at := time.Unix(1700000000, 500_000_000)
	m := NewMetrics(Sources{MastersLastRead: func() time.Time { return at }})
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := metric(t, fams, "spartan_masters_last_read_timestamp_seconds", nil)
	if g == nil || g.Gauge.GetValue() != 1700000000.5 {
		t.Fatalf("spartan_masters_last_read_timestamp_seconds = %v, want 1700000000.5", g)
	}
}
