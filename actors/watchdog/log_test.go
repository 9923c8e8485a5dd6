package watchdog

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/test/testkit"
)

// logLines parses the JSON log lines the actor's goroutine wrote to buf.
func logLines(t *testing.T, buf *testkit.SyncBuffer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLogLines: failing probes before the first pass are startup, not a
// "probe failed" (even at debug level); after it, a failure is a warning
// whose durations share one unit.
func TestLogLines(t *testing.T) {
	var buf testkit.SyncBuffer
	h := newLoggedHarness(t, zerolog.New(&buf).Level(zerolog.DebugLevel))
	h.clock.Advance(h.step(errDown))
	h.clock.Advance(h.step(errDown))
	for _, l := range logLines(t, &buf) {
		if l["message"] == "probe failed" {
			t.Fatalf("startup logged %v", l)
		}
	}
	h.clock.Advance(h.step(nil))
	h.clock.Advance(h.step(errDown))
	var failed map[string]any
	for _, l := range logLines(t, &buf) {
		if l["message"] == "probe failed" {
			failed = l
		}
	}
	if failed == nil {
		t.Fatalf("a failure after READY logged no \"probe failed\": %v", logLines(t, &buf))
	}
	if failed["level"] != "warn" {
		t.Errorf("probe failed at level %v, want warn", failed["level"])
	}
	if g, ok := failed["grace_seconds"].(float64); !ok || g != grace.Seconds() {
		t.Errorf("grace_seconds = %v, want %v: %v", failed["grace_seconds"], grace.Seconds(), failed)
	}
	if _, ok := failed["failing_for_seconds"].(float64); !ok {
		t.Errorf("no failing_for_seconds: %v", failed)
	}
}
