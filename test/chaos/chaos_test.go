// Package chaos kills every node of a running daemon's supervision tree,
// over and over and in random order, under a steady client load, and
// checks that Spartan keeps answering, restarts everything, and leaks
// nothing.
package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/supervisor"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
)

// Load and chaos shape. A query counts as answered only if its single
// attempt got the right answer within queryTimeout (a stub resolver would
// retry after that, which we do not count).
const (
	rate           = 200 // queries per second, all routes together
	chaosFor       = 20 * time.Second
	killsPerNode   = 3
	queryTimeout   = 2 * time.Second
	tcpEvery       = 5 // every 5th query goes over TCP
	minAnswered    = 0.999
	maxExtraFDs    = 10
	maxExtraThread = 8
	maxExtraGo     = 15
)

// probe is one kind of query and the answer it must get.
type probe struct {
	route, name, want string
}

// startMasters starts n fake Mesos-DNS servers on distinct loopback IPs
// sharing one port (mesos_dns_port is one port for all masters).
func startMasters(t *testing.T, n int, h dnstest.Handler) []*dnstest.Upstream {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		first := dnstest.Start(t, "127.0.0.2", h)
		ms := []*dnstest.Upstream{first}
		ok := true
		for i := 1; i < n; i++ {
			ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
			m, err := dnstest.StartAt(netip.AddrPortFrom(ip, first.Addr.Port()), h)
			if err != nil {
				ok = false
				break
			}
			t.Cleanup(m.Close)
			ms = append(ms, m)
		}
		if ok {
			return ms
		}
	}
	t.Fatal("no port free on every master IP")
	return nil
}

type chaosRun struct {
	t *testing.T
	s *harness.Spartan

	mu       sync.Mutex
	kills    []killEvent
	expected map[string]int // direct kills per path
}

type killEvent struct {
	at   time.Time
	path string
}

// tree reads the live tree through spartanctl, retrying while the control
// socket is itself restarting.
func (c *chaosRun) tree() supervisor.Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := c.s.Ctl("tree", "--json")
		if err == nil {
			var n supervisor.Node
			if err := json.Unmarshal([]byte(out), &n); err != nil {
				c.t.Fatalf("spartanctl tree --json: %v\n%s", err, out)
			}
			return n
		}
		if c.s.Exited() {
			c.t.Fatalf("spartan exited during chaos; log:\n%s", c.s.LogTail(40))
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("spartanctl tree kept failing: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func walk(n supervisor.Node, fn func(n supervisor.Node)) {
	fn(n)
	for _, c := range n.Children {
		walk(c, fn)
	}
}

func allRunning(root supervisor.Node) bool {
	ok := true
	walk(root, func(n supervisor.Node) { ok = ok && n.State == supervisor.StateRunning })
	return ok
}

// waitTree polls the tree until cond holds.
func (c *chaosRun) waitTree(what string, timeout time.Duration, cond func(supervisor.Node) bool) supervisor.Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := c.tree()
		if cond(n) {
			return n
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(n, "", "  ")
			c.t.Fatalf("timed out waiting for %s; tree:\n%s\nlog:\n%s", what, js, c.s.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill kills path once it and its whole tree are running, then waits for
// its restart to be counted: a second kill landing while the first is being
// handled (or a supervisor kill stopping a child that was killed a moment
// before) would make the accounting ambiguous.
func (c *chaosRun) kill(path string) {
	c.t.Helper()
	c.waitTree("the tree running before killing "+path, 15*time.Second, allRunning)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := c.s.Ctl("kill", path)
		if err == nil {
			break
		}
		// The control socket may be between runs, or the node between
		// restarts: both pass.
		if time.Now().After(deadline) {
			c.t.Fatalf("spartanctl kill %s kept failing: %v\n%s", path, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	c.expected[path]++
	want := c.expected[path]
	c.kills = append(c.kills, killEvent{time.Now(), path})
	c.mu.Unlock()
	c.waitTree(fmt.Sprintf("%s restarted (%d)", path, want), 15*time.Second, func(n supervisor.Node) bool {
		m, ok := n.Find(path)
		return ok && m.Restarts >= want
	})
}

// scrape returns one sample of the daemon's /metrics, named as exposed
// (with its labels, if any).
func scrape(t *testing.T, addr, name string) float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := harness.Scrape(addr, name)
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape %s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	sent time.Time
	p    probe
	tcp  bool
	ok   bool
	err  string
}

func ask(addr netip.AddrPort, p probe, tcp bool) result {
	r := result{sent: time.Now(), p: p, tcp: tcp}
	c := &dns.Client{Timeout: queryTimeout}
	if tcp {
		c.Net = "tcp"
	}
	m := new(dns.Msg)
	m.SetQuestion(p.name, dns.TypeA)
	m.RecursionDesired = true
	rep, _, err := c.Exchange(m, addr.String())
	switch {
	case err != nil:
		r.err = err.Error()
	case rep.Rcode != dns.RcodeSuccess:
		r.err = "rcode " + dns.RcodeToString[rep.Rcode]
	case len(rep.Answer) == 0:
		r.err = "no answer"
	default:
		a, ok := rep.Answer[0].(*dns.A)
		if ok && a.A.String() == p.want {
			r.ok = true
		} else {
			r.err = "wrong answer " + rep.Answer[0].String()
		}
	}
	return r
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos takes ~40 s")
	}
	def1 := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.1"))
	def2 := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.1.0.1"))
	zone := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.2.0.1"))
	masters := startMasters(t, 2, dnstest.Answer("10.3.0.1"))
	masterList := filepath.Join(t.TempDir(), "master_list")
	if err := os.WriteFile(masterList, []byte(fmt.Sprintf(`[%q, %q]`, masters[0].Addr.Addr(), masters[1].Addr.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	s := harness.Start(t, harness.Options{HTTP: true, Config: map[string]any{
		"upstream_resolvers": []string{def1.Addr.String(), def2.Addr.String()},
		"forward_zones":      map[string][]string{"zone.test": {zone.Addr.String()}},
		"master_source":      "master_list",
		"master_list_file":   masterList,
		"mesos_dns_port":     int(masters[0].Addr.Port()),
		// The probes repeat five names: with the cache on they would be
		// answered from it and the kills would never meet a race. The
		// cache is tested on its own (test/e2e, test/conformance).
		"cache": map[string]any{"enabled": false},
	}})
	c := &chaosRun{t: t, s: s, expected: map[string]int{}}

	probes := []probe{
		{"local", "ready.spartan.", "127.0.0.1"},
		{"zk", "zk-1.zk.", masters[0].Addr.Addr().String()},
		{"default", "www.default.test.", "10.1.0.1"},
		{"zone", "www.zone.test.", "10.2.0.1"},
		{"mesos", "leader.mesos.", "10.3.0.1"},
	}
	// Every route works before the chaos starts (masters come from the
	// watcher shortly after start).
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range probes {
		for !ask(s.Addr, p, false).ok {
			if time.Now().After(deadline) {
				t.Fatalf("%s (%s) never answered %s; log:\n%s", p.name, p.route, p.want, s.LogTail(20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Warm up the process (threads, pools) with a short burst, then take
	// the resource baseline.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() { ask(s.Addr, probes[i%len(probes)], i%tcpEvery == 0) })
		time.Sleep(time.Second / rate)
	}
	wg.Wait()
	time.Sleep(1500 * time.Millisecond) // race losers finish
	pid := s.PID()
	fds0, threads0 := harness.OpenFDs(pid), harness.Threads(pid)
	gor0 := scrape(t, s.HTTPAddr, "go_goroutines")

	// The chaos plan: every node killPerNode times, in random order.
	var plan []string
	walk(c.tree(), func(n supervisor.Node) {
		for range killsPerNode {
			plan = append(plan, n.Path)
		}
	})
	rand.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })

	// Open-loop load: one query every 1/rate s, each in its own goroutine,
	// whatever happened to the previous ones.
	var (
		results []result
		resMu   sync.Mutex
		stop    atomic.Bool
		loadWG  sync.WaitGroup
	)
	loadDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		// Catch up on ticks a busy machine made us miss: the rate holds.
		for i := 0; !stop.Load(); {
			<-tick.C
			for due := int(time.Since(start).Seconds() * rate); i < due; i++ {
				p, tcp := probes[i%len(probes)], i%tcpEvery == tcpEvery-1
				loadWG.Go(func() {
					r := ask(s.Addr, p, tcp)
					resMu.Lock()
					results = append(results, r)
					resMu.Unlock()
				})
			}
		}
		loadWG.Wait()
	}()

	gap := chaosFor / time.Duration(len(plan)+1)
	for _, path := range plan {
		time.Sleep(time.Duration(rand.Int64N(int64(gap))))
		c.kill(path)
		if s.Exited() {
			t.Fatalf("spartan exited after killing %s; log:\n%s", path, s.LogTail(40))
		}
	}
	if rest := chaosFor - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	stop.Store(true)
	<-loadDone
	elapsed := time.Since(start)

	if s.Exited() {
		t.Fatalf("spartan exited; log:\n%s", s.LogTail(40))
	}
	// Everything is back, and every directly killed node was restarted once
	// per kill (children stopped by a killed supervisor are restarted with
	// it, which is not a failure of theirs: supervisor/doc.go).
	final := c.waitTree("every node running after the chaos", 20*time.Second, allRunning)
	totalRestarts := 0
	walk(final, func(n supervisor.Node) {
		totalRestarts += n.Restarts
		if want := c.expected[n.Path]; n.Restarts != want {
			t.Errorf("%s: %d restarts, want %d (one per kill)", n.Path, n.Restarts, want)
		}
	})

	// The restart metric agrees with the tree.
	walk(final, func(n supervisor.Node) {
		series := fmt.Sprintf("spartan_actor_restarts_total{path=%q}", n.Path)
		if v := scrape(t, s.HTTPAddr, series); int(v) != n.Restarts {
			t.Errorf("%s = %v, tree says %d restarts", series, v, n.Restarts)
		}
	})

	// The figures.
	var answered, lostUDP, lostTCP int
	errs := map[string]int{}
	byRoute := map[string][2]int{}
	var lost []result
	for _, r := range results {
		br := byRoute[r.p.route]
		br[0]++
		if r.ok {
			answered++
			br[1]++
		} else {
			lost = append(lost, r)
			if r.tcp {
				lostTCP++
			} else {
				lostUDP++
			}
			errs[r.err]++
		}
		byRoute[r.p.route] = br
	}
	sent := len(results)
	t.Logf("chaos: nodes %v", keys(c.expected))
	t.Logf("chaos: %s, %d kills over %d nodes, %d restarts in the tree", elapsed.Round(time.Millisecond), len(c.kills), len(c.expected), totalRestarts)
	t.Logf("chaos: sent %d queries (%.0f/s), answered %d (%.3f%%), lost %d (UDP %d, TCP %d)",
		sent, float64(sent)/elapsed.Seconds(), answered, 100*float64(answered)/float64(max(sent, 1)), sent-answered, lostUDP, lostTCP)
	routes := make([]string, 0, len(byRoute))
	for r := range byRoute {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		t.Logf("chaos:   route %-8s sent %5d answered %5d", r, byRoute[r][0], byRoute[r][1])
	}
	for e, n := range errs {
		t.Logf("chaos:   lost %d: %s", n, e)
	}
	// The kills around each lost query, to find where it was lost (a kill
	// is recorded when spartanctl returns, just after it took effect).
	c.mu.Lock()
	for _, r := range lost {
		prev, next := "none", "none"
		for _, k := range c.kills {
			if k.at.Before(r.sent) {
				prev = fmt.Sprintf("%s %v before", k.path, r.sent.Sub(k.at).Round(time.Millisecond))
			} else {
				next = fmt.Sprintf("%s %v after", k.path, k.at.Sub(r.sent).Round(time.Millisecond))
				break
			}
		}
		t.Logf("chaos:   lost %s %s tcp=%v %q; kills: %s; %s", r.p.route, r.p.name, r.tcp, r.err, prev, next)
	}
	c.mu.Unlock()
	if sent < int(float64(rate)*chaosFor.Seconds()*0.95) {
		t.Errorf("only %d queries sent in %v", sent, elapsed)
	}
	if float64(answered) < minAnswered*float64(sent) {
		t.Errorf("answered %d of %d (%.3f%%), want at least %.1f%%", answered, sent, 100*float64(answered)/float64(sent), 100*minAnswered)
	}

	// Nothing leaked: fds, threads and goroutines come back near the
	// baseline once the last queries' losers are done.
	var fds, threads int
	var gor float64
	settle := time.Now().Add(10 * time.Second)
	for {
		fds, threads = harness.OpenFDs(pid), harness.Threads(pid)
		gor = scrape(t, s.HTTPAddr, "go_goroutines")
		if (fds <= fds0+maxExtraFDs && threads <= threads0+maxExtraThread && gor <= gor0+maxExtraGo) || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("chaos: open fds %d -> %d, threads %d -> %d, goroutines %.0f -> %.0f", fds0, fds, threads0, threads, gor0, gor)
	if fds > fds0+maxExtraFDs {
		t.Errorf("open fds %d after chaos, %d before", fds, fds0)
	}
	if threads > threads0+maxExtraThread {
		t.Errorf("threads %d after chaos, %d before", threads, threads0)
	}
	if gor > gor0+maxExtraGo {
		t.Errorf("goroutines %.0f after chaos, %.0f before", gor, gor0)
	}

	// The daemon still serves every route and its API.
	for _, p := range probes {
		for _, tcp := range []bool{false, true} {
			if r := ask(s.Addr, p, tcp); !r.ok {
				t.Errorf("after chaos, %s tcp=%v: %s", p.name, tcp, r.err)
			}
		}
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + s.HTTPAddr + "/v1/hosts/leader.mesos")
	if err != nil {
		t.Fatalf("HTTP API after chaos: %v", err)
	}
	defer resp.Body.Close()
	var hosts []struct{ Host, IP string }
	if err := json.NewDecoder(resp.Body).Decode(&hosts); err != nil || resp.StatusCode != 200 || len(hosts) != 1 || hosts[0].IP != "10.3.0.1" {
		t.Errorf("GET /v1/hosts/leader.mesos after chaos: %d %v (%v)", resp.StatusCode, hosts, err)
	}
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
