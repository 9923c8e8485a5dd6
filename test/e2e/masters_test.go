package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/zkharness"
)

// mesosMasters starts a fake Mesos-DNS on 127.0.0.2-4, all on one port
// (mesos_dns_port is one port for every master). Each answers
// leader.mesos with its own IP, so a test can tell which masters it reached.
func mesosMasters(t *testing.T) (port int) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		first := dnstest.Start(t, "127.0.0.2", dnstest.Answer("127.0.0.2"))
		port = int(first.Addr.Port())
		ok := true
		for _, ip := range []string{"127.0.0.3", "127.0.0.4"} {
			u, err := dnstest.StartAt(netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)), dnstest.Answer(ip))
			if err != nil {
				ok = false
				break
			}
			t.Cleanup(u.Close)
		}
		if ok {
			return port
		}
	}
	t.Fatal("no common free port for the fake masters")
	return 0
}

// zkAnswers returns zk-1..zk-5 as dig sees them, joined by spaces.
func zkAnswers(t *testing.T, s *harness.Spartan) string {
	var out []string
	for i := 1; i <= 5; i++ {
		r, err := harness.Query(s.Addr, fmt.Sprintf("zk-%d.zk", i), dns.TypeA, false, time.Second)
		if err != nil || len(r.Answer) != 1 {
			out = append(out, "-")
			continue
		}
		out = append(out, r.Answer[0].(*dns.A).A.String())
	}
	return strings.Join(out, " ")
}

// awaitZK polls until zk-1..5 read want and returns how long it took.
func awaitZK(t *testing.T, s *harness.Spartan, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := zkAnswers(t, s)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("zk records %q, want %q after %v; log:\n%s", got, want, limit, s.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderMesos(t *testing.T, s *harness.Spartan) string {
	t.Helper()
	return digShort(t, s, "leader.mesos")
}

// noCache switches the answer cache off, for tests that need every query
// to reach an upstream (a cached answer outlives a masters change, by design).
var noCache = map[string]any{"enabled": false}

// inSet reports whether ip is one of the listed masters.
func inSet(ip string, masters ...string) bool {
	for _, m := range masters {
		if ip == m {
			return true
		}
	}
	return false
}

func TestMastersFromExhibitor(t *testing.T) {
	port := mesosMasters(t)
	var body atomic.Value
	set := func(ips ...string) {
		var st []map[string]any
		for i, ip := range ips {
			st = append(st, map[string]any{"code": 3, "description": "serving", "hostname": ip, "isLeader": i == 0})
		}
		b, _ := json.Marshal(st)
		body.Store(b)
	}
	var fail atomic.Bool
	ex := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "exhibitor down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body.Load().([]byte))
	}))
	defer ex.Close()
	set("127.0.0.3", "127.0.0.2")
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"cache":                           noCache, // leader.mesos must reach the current masters on every query
		"master_source":                   "exhibitor_uri",
		"exhibitor_uri":                   ex.URL + "/exhibitor/v1/cluster/status",
		"mesos_dns_port":                  port,
		"masters_refresh_interval_normal": "500ms",
		"masters_refresh_interval_fail":   "200ms",
		"exhibitor_timeout":               "1s",
	}})
	awaitZK(t, s, "127.0.0.2 127.0.0.3 127.0.0.2 127.0.0.3 127.0.0.2", 5*time.Second)
	if ip := leaderMesos(t, s); !inSet(ip, "127.0.0.2", "127.0.0.3") {
		t.Fatalf("leader.mesos answered by %q", ip)
	}
	set("127.0.0.4", "127.0.0.3", "127.0.0.2")
	d := awaitZK(t, s, "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 127.0.0.3", 5*time.Second)
	t.Logf("exhibitor: master change reached answers in %v (refresh interval 500ms)", d)
	// An Exhibitor outage keeps the last known masters.
	fail.Store(true)
	time.Sleep(time.Second)
	if got := zkAnswers(t, s); got != "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 127.0.0.3" {
		t.Fatalf("masters lost during an Exhibitor outage: %q", got)
	}
	fail.Store(false)
	set("127.0.0.4")
	awaitZK(t, s, "127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4", 5*time.Second)
	if ip := leaderMesos(t, s); ip != "127.0.0.4" {
		t.Fatalf("leader.mesos answered by %q, want the only master", ip)
	}
}

func TestMastersFromMasterList(t *testing.T) {
	port := mesosMasters(t)
	file := filepath.Join(t.TempDir(), "master_list")
	write := func(s string) {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(`["127.0.0.4"]`)
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"cache":                           noCache, // leader.mesos must reach the current masters on every query
		"master_source":                   "master_list",
		"master_list_file":                file,
		"mesos_dns_port":                  port,
		"masters_refresh_interval_normal": "500ms",
		"masters_refresh_interval_fail":   "200ms",
	}})
	awaitZK(t, s, "127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4", 5*time.Second)
	write(`["127.0.0.2", "127.0.0.3"]`)
	d := awaitZK(t, s, "127.0.0.2 127.0.0.3 127.0.0.2 127.0.0.3 127.0.0.2", 5*time.Second)
	t.Logf("master_list: master change reached answers in %v (refresh interval 500ms)", d)
	if ip := leaderMesos(t, s); !inSet(ip, "127.0.0.2", "127.0.0.3") {
		t.Fatalf("leader.mesos answered by %q", ip)
	}
	write(`not json`)
	time.Sleep(700 * time.Millisecond)
	if got := zkAnswers(t, s); got != "127.0.0.2 127.0.0.3 127.0.0.2 127.0.0.3 127.0.0.2" {
		t.Fatalf("a corrupt master list changed the masters: %q", got)
	}
}

func TestMastersFromZooKeeper(t *testing.T) {
	port := mesosMasters(t)
	z := zkharness.Start(t)
	conn, _, err := zk.Connect([]string{z.Addr()}, 5*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Create("/mesos", nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
		t.Fatal(err)
	}
	info := func(ip string) []byte {
		b, _ := json.Marshal(map[string]any{"id": "master-" + ip, "pid": "master@" + ip + ":5050", "hostname": ip,
			"address": map[string]any{"ip": ip, "port": 5050, "hostname": ip}})
		return b
	}
	node := func(ip string) string {
		p, err := conn.Create("/mesos/json.info_", info(ip), zk.FlagSequence, zk.WorldACL(zk.PermAll))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	n2 := node("127.0.0.2")
	s := harness.Start(t, harness.Options{Config: map[string]any{
		"cache":                           noCache, // leader.mesos must reach the current masters on every query
		"master_source":                   "zookeeper",
		"zookeeper_servers":               []string{z.Addr()},
		"mesos_dns_port":                  port,
		"masters_refresh_interval_normal": "30s", // the watch, not polling, must bring changes
		"masters_refresh_interval_fail":   "500ms",
	}})
	awaitZK(t, s, "127.0.0.2 127.0.0.2 127.0.0.2 127.0.0.2 127.0.0.2", 5*time.Second)

	node("127.0.0.4")
	d := awaitZK(t, s, "127.0.0.2 127.0.0.4 127.0.0.2 127.0.0.4 127.0.0.2", 3*time.Second)
	t.Logf("zookeeper: new master reached answers in %v (watch)", d)
	if d > time.Second {
		t.Errorf("ZooKeeper change took %v to reach answers, want within 1s", d)
	}
	if err := conn.Delete(n2, -1); err != nil {
		t.Fatal(err)
	}
	d = awaitZK(t, s, "127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4 127.0.0.4", 3*time.Second)
	t.Logf("zookeeper: removed master left answers in %v (watch)", d)
	if d > time.Second {
		t.Errorf("ZooKeeper delete took %v to reach answers, want within 1s", d)
	}
	if ip := leaderMesos(t, s); ip != "127.0.0.4" {
		t.Fatalf("leader.mesos answered by %q", ip)
	}
}
