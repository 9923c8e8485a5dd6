package watchdog

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// lockedBuffer is a log sink the actor's goroutine writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
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
	var buf lockedBuffer
	h := newLoggedHarness(t, zerolog.New(&buf).Level(zerolog.DebugLevel))
	h.clock.Advance(h.step(errDown))
	h.clock.Advance(h.step(errDown))
	for _, l := range buf.lines(t) {
		if l["message"] == "probe failed" {
			t.Fatalf("startup logged %v", l)
		}
	}
	h.clock.Advance(h.step(nil))
	h.clock.Advance(h.step(errDown))
	var failed map[string]any
	for _, l := range buf.lines(t) {
		if l["message"] == "probe failed" {
			failed = l
		}
	}
	if failed == nil {
		t.Fatalf("a failure after READY logged no \"probe failed\": %v", buf.lines(t))
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
