package masters

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/test/fakeclock"
)

// TestMasterList follows a master_list file through its life: absent,
// created, changed, corrupted, emptied, fixed and removed. A bad file is a
// failed read and leaves nothing else; the poll interval follows the last
// outcome.
func TestMasterList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master_list")
	clock := fakeclock.New()
	cfg := testConfig("master_list")
	cfg.MasterListFile = path
	cfg.MastersRefreshNormal = 120 * time.Second
	cfg.MastersRefreshFail = 5 * time.Second
	out := start(t, cfg, nil, clock)

	expectFailed(t, out, 5*time.Second, "no such file")
	clock.ExpectAfter(t, cfg.MastersRefreshFail)
	interval := cfg.MastersRefreshFail

	steps := []struct {
		name    string
		content *string // nil removes the file
		want    []string
		wantErr string
	}{
		{name: "created", content: ptr(`["10.0.0.2", "10.0.0.1"]`), want: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "changed", content: ptr("[\"10.0.0.3\",\n\"10.0.0.1\",\"10.0.0.3\"]\n"), want: []string{"10.0.0.1", "10.0.0.3"}},
		{name: "corrupted", content: ptr(`["10.0.0.3", "10.0.0.1"`), wantErr: "not a JSON array"},
		{name: "half-written", content: ptr(``), wantErr: "not a JSON array"},
		{name: "not an IP", content: ptr(`["10.0.0.3", "master-1"]`), wantErr: `entry 1 ("master-1") is not an IP`},
		{name: "emptied", content: ptr(`[]`), wantErr: "master list is empty"},
		{name: "fixed", content: ptr(`["10.0.0.4"]`), want: []string{"10.0.0.4"}},
		{name: "removed", content: nil, wantErr: "no such file"},
		{name: "back", content: ptr(`["10.0.0.5"]`), want: []string{"10.0.0.5"}},
	}
	for _, st := range steps {
		if st.content == nil {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(path, []byte(*st.content), 0o644); err != nil {
			t.Fatal(err)
		}
		clock.Advance(interval)
		if st.want != nil {
			m := expectMasters(t, out, 5*time.Second, st.want...)
			if m.Source != "master_list" {
				t.Errorf("%s: source %q", st.name, m.Source)
			}
			interval = cfg.MastersRefreshNormal
		} else {
			f := expectFailed(t, out, 5*time.Second, st.wantErr)
			if f.Source != "master_list" {
				t.Errorf("%s: source %q", st.name, f.Source)
			}
			interval = cfg.MastersRefreshFail
		}
		clock.ExpectAfter(t, interval)
		expectQuiet(t, out, 10*time.Millisecond)
	}
}

func TestChangeLatencyMasterList(t *testing.T) {
	const normal = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "master_list")
	if err := os.WriteFile(path, []byte(`["10.0.0.1"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("master_list")
	cfg.MasterListFile = path
	cfg.MastersRefreshNormal = normal
	out := start(t, cfg, nil, clock.Real{})
	waitMasters(t, out, time.Second, "10.0.0.1")
	var worst time.Duration
	for i := 2; i <= 6; i++ {
		ip := "10.0.0." + string(rune('0'+i))
		if err := os.WriteFile(path, []byte(`["`+ip+`"]`), 0o644); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, waitMasters(t, out, 5*time.Second, ip))
	}
	t.Logf("master_list: change visible after at most %v with masters_refresh_interval_normal=%v", worst, normal)
}

func ptr(s string) *string { return &s }
