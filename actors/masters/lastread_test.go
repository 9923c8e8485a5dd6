package masters

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/msg"
	"github.com/spartan-dns/spartan/test/fakeclock"
)

// TestLastGoodRead: the time of the last good read (the masters-age
// metric) moves on a good read and stays put on a failed one.
func TestLastGoodRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master_list")
	clock := fakeclock.New()
	cfg := testConfig("master_list")
	cfg.MasterListFile = path
	out := make(chan msg.ToState, 100)
	svc := New(cfg, out, nil, testLogger(t), clock)
	lr, ok := svc.(interface{ LastGoodRead() time.Time })
	if !ok {
		t.Fatalf("%T has no LastGoodRead", svc)
	}
	if err := os.WriteFile(path, []byte(`["10.0.0.1"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if !lr.LastGoodRead().IsZero() {
		t.Fatal("LastGoodRead before any read is not zero")
	}
	runService(t, svc)
	expectMasters(t, out, 5*time.Second, "10.0.0.1")
	first := lr.LastGoodRead()
	if !first.Equal(clock.Now()) {
		t.Fatalf("LastGoodRead %v, want the clock's %v", first, clock.Now())
	}
	clock.ExpectAfter(t, cfg.MastersRefreshNormal)
	if err := os.WriteFile(path, []byte(`[]`), 0o644); err != nil {
		t.Fatal(err)
	}
	clock.Advance(cfg.MastersRefreshNormal)
	expectFailed(t, out, 5*time.Second, "empty")
	if got := lr.LastGoodRead(); !got.Equal(first) {
		t.Fatalf("a failed read moved LastGoodRead from %v to %v", first, got)
	}
}
