//go:build soak

// Package soak runs Spartan for a long time under everything at once: load
// over every route (UDP and TCP), kills of random tree nodes, reloads, and
// hostile clients, and samples the process every minute. `make soak`
// (build tag soak: never part of `make test`).
package soak

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/testkit"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/supervisor"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/harness"
	"github.com/spartan-dns/spartan/test/sysd"
)

var (
	duration    = flag.Duration("soak.duration", 3*time.Minute, "how long the soak runs")
	qps         = flag.Int("soak.qps", 2000, "queries per second, UDP and TCP together")
	killEvery   = flag.Duration("soak.kill", 200*time.Millisecond, "spartanctl kill of a random tree node this often")
	reloadEach  = flag.Duration("soak.reload", time.Minute, "a SIGHUP reload this often")
	withHostile = flag.Bool("soak.hostile", true, "mix in hostile clients")
	out         = flag.String("soak.out", "", "write the results as markdown to this file")
)

// maxRefusedPerMinute: kill attempts a minute may see refused, about 20 s
// of the control socket being away at the default kill rate (a reload
// takes a few).
const maxRefusedPerMinute = 100

type sample struct {
	minute                 int
	pid                    int
	rssKB, fds, goroutines int
	kills, restarts        int
	refused                int // kill attempts spartanctl could not make (this minute)
	reloads                int
	sent, answered, lost   int
	udpLost, tcpLost       int
	late, resent           int
	p50, p99, p999         time.Duration
	hostile                int
}

func TestSoak(t *testing.T) {
	commit := gitCommit() // of the tree the daemon is built from, now
	bin, ctlBin := harness.Build(t)
	dir := t.TempDir()
	ip, port := testkit.FreeAddr(t)
	addr := netip.AddrPortFrom(ip, uint16(port))
	httpAddr := netip.AddrPortFrom(ip, uint16(testkit.FreePort(t, ip, "tcp"))).String()
	ctlSock := filepath.Join(dir, "ctl.sock")

	def := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.1"))
	zone := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.2"))
	mesos := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.0.0.3"))
	masters := filepath.Join(dir, "masters.json")
	if err := os.WriteFile(masters, []byte(`["127.0.0.1"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"bind_ips":           []string{ip.String()},
		"udp_port":           port,
		"tcp_port":           port,
		"interface":          map[string]any{"manage": false, "name": "spartan"},
		"http_listen":        httpAddr,
		"ctl_socket":         ctlSock,
		"master_source":      "master_list",
		"master_list_file":   masters,
		"mesos_dns_port":     mesos.Addr.Port(),
		"upstream_resolvers": []string{def.Addr.String()},
		"forward_zones":      map[string]any{"fz.test": []string{zone.Addr.String()}},
	}
	cfgPath := filepath.Join(dir, "spartan.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := sysd.NewManager(t, dir, addr, bin, "-config", cfgPath, "-reload-timeout", "20s")
	m.Start(t)
	// The masters are read at start; wait for *.mesos to answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := harness.Query(addr, "leader.mesos.", dns.TypeA, false, 500*time.Millisecond); err == nil && r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader.mesos never answered; log:\n%s", m.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}

	names := []string{"www.example.com.", "a.fz.test.", "leader.mesos.", "ready.spartan.", "localhost.", "zk-1.zk."}
	startLoad := func() *sysd.Load {
		l, err := sysd.StartLoad(sysd.LoadOptions{Addr: addr, Names: names, UDPRate: *qps - 200, UDPSockets: 4, TCPClients: 2, TCPRate: 100})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		kills    atomic.Int64
		reloads  atomic.Int64
		hostile  atomic.Int64
		killErrs atomic.Int64
	)
	ctl := func(args ...string) ([]byte, error) {
		return exec.Command(ctlBin, append([]string{"-socket", ctlSock}, args...)...).CombinedOutput()
	}
	var pathsMu sync.Mutex
	var paths []string
	refusedWhy := map[string]int{} // what spartanctl said, by path; under pathsMu
	refresh := func() {
		o, err := ctl("tree", "--json")
		var root supervisor.Node
		if err != nil || json.Unmarshal(o, &root) != nil {
			return
		}
		var ps []string
		var walk func(n supervisor.Node)
		walk = func(n supervisor.Node) {
			ps = append(ps, n.Path)
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(root)
		pathsMu.Lock()
		paths = ps
		pathsMu.Unlock()
	}
	refresh()
	rng := rand.New(rand.NewPCG(1, 2))
	wg.Add(1)
	go func() { // the killer
		defer wg.Done()
		tick := time.NewTicker(*killEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pathsMu.Lock()
			p := ""
			if len(paths) > 0 {
				p = paths[rng.IntN(len(paths))]
			}
			pathsMu.Unlock()
			if p == "" {
				refresh()
				continue
			}
			if o, err := ctl("kill", p); err != nil {
				killErrs.Add(1) // the ctl actor itself restarting, or a reload under way
				msg := strings.TrimSpace(string(o))
				if i := strings.IndexAny(msg, "\n"); i >= 0 {
					msg = msg[:i]
				}
				if len(msg) > 160 {
					msg = msg[:160]
				}
				pathsMu.Lock()
				refusedWhy[fmt.Sprintf("%s: %s", p, msg)]++
				pathsMu.Unlock()
				continue
			}
			kills.Add(1)
		}
	}()
	wg.Add(1)
	go func() { // hostile clients
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if *withHostile {
				hostileRound(addr, i)
			}
			hostile.Add(1)
		}
	}()

	var samples []sample
	refusedBefore := 0
	start := time.Now()
	load := startLoad()
	nextReload := start.Add(*reloadEach)
	for minute := 1; time.Since(start) < *duration; minute++ {
		end := start.Add(time.Duration(minute) * time.Minute)
		if end.After(start.Add(*duration)) {
			end = start.Add(*duration)
		}
		for time.Now().Before(end) {
			if time.Now().After(nextReload) {
				before, after := m.Reload(t)
				if before == after {
					t.Errorf("reload at %v failed; log:\n%s", time.Since(start).Round(time.Second), m.LogTail(20))
				} else {
					m.WaitExit(t, before, 30*time.Second)
					reloads.Add(1)
				}
				refresh()
				nextReload = nextReload.Add(*reloadEach)
			}
			time.Sleep(100 * time.Millisecond)
		}
		next := startLoad()
		r := load.Stop()
		load = next
		pid := m.Main()
		refusedNow := int(killErrs.Load())
		s := sample{
			minute: minute, pid: pid,
			rssKB: rss(pid), fds: harness.OpenFDs(pid), goroutines: int(metric(httpAddr, "go_goroutines")),
			kills: int(kills.Load()), refused: refusedNow - refusedBefore, restarts: int(sumMetric(httpAddr, "spartan_actor_restarts_total")), reloads: int(reloads.Load()),
			sent: r.Sent, answered: r.Answered, lost: r.Lost, udpLost: r.UDPLost, tcpLost: r.TCPLost, late: r.Late, resent: r.TCPResent,
			p50: r.Quantile(0.5), p99: r.Quantile(0.99), p999: r.Quantile(0.999), hostile: int(hostile.Load()),
		}
		refusedBefore = refusedNow
		samples = append(samples, s)
		t.Logf("minute %d: pid %d rss %d kB fds %d goroutines %d kills %d refused %d restarts(this pid) %d reloads %d | sent %d answered %d lost %d (udp %d tcp %d) late %d tcp-resent %d p50 %v p99 %v p99.9 %v",
			s.minute, s.pid, s.rssKB, s.fds, s.goroutines, s.kills, s.refused, s.restarts, s.reloads, s.sent, s.answered, s.lost, s.udpLost, s.tcpLost, s.late, s.resent, s.p50, s.p99, s.p999)
	}
	close(stop)
	wg.Wait()
	r := load.Stop()
	if r.Lost > 0 {
		t.Errorf("last stretch lost %d", r.Lost)
	}
	total := sample{}
	for _, s := range samples {
		total.sent += s.sent
		total.answered += s.answered
		total.lost += s.lost
		total.late += s.late
	}
	if total.lost != 0 {
		t.Errorf("lost %d of %d queries", total.lost, total.sent)
		var warn []string
		for _, l := range strings.Split(m.LogTail(100000), "\n") {
			if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.Contains(l, "reload") {
				warn = append(warn, l)
			}
		}
		if len(warn) > 60 {
			warn = warn[len(warn)-60:]
		}
		t.Logf("warnings, errors and reloads in the log:\n%s", strings.Join(warn, "\n"))
	}
	// A reload's new process takes the control socket over at once, so
	// refusals come only from the ctl actor's own restarts (it is killed
	// too); more than about 20 s of them in a minute means an operator's
	// spartanctl would fail too.
	for _, s := range samples {
		if s.refused > maxRefusedPerMinute {
			t.Errorf("minute %d: %d kill attempts refused (at most %d expected)", s.minute, s.refused, maxRefusedPerMinute)
		}
	}
	if len(refusedWhy) > 0 {
		var lines []string
		for why, n := range refusedWhy {
			lines = append(lines, fmt.Sprintf("%6d  %s", n, why))
		}
		slices.Sort(lines)
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("kill attempts refused, by what spartanctl said:\n%s", strings.Join(lines, "\n"))
	}
	if *out != "" {
		writeReport(t, *out, commit, samples, total, int(killErrs.Load()))
	}
}

// hostileRound runs one round of bad clients: garbage and cut frames over
// TCP, a slowloris that starts a frame and stalls, garbage datagrams, and
// every tenth round a client that pipelines and never reads.
func hostileRound(addr netip.AddrPort, i int) {
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		_, _ = c.Write([]byte{0, 14, 0xde, 0xad, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 3, 'a'})
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = c.Read(make([]byte, 64))
		_ = c.Close()
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		go func() { // slowloris: one length byte, then nothing; the server cuts it
			_, _ = c.Write([]byte{0})
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Read(make([]byte, 1))
			_ = c.Close()
		}()
	}
	if c, err := net.Dial("udp", addr.String()); err == nil {
		for j := range 10 {
			b := make([]byte, 5+j*7)
			for k := range b {
				b[k] = byte(k*31 + j + i)
			}
			_, _ = c.Write(b)
		}
		_ = c.Close()
	}
	if i%10 == 0 {
		if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
			go func() { // pipelines, never reads
				m := new(dns.Msg)
				m.SetQuestion("ready.spartan.", dns.TypeA)
				q, _ := m.Pack()
				var stream []byte
				for range 5000 {
					stream = binary.BigEndian.AppendUint16(stream, uint16(len(q)))
					stream = append(stream, q...)
				}
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write(stream)
				time.Sleep(5 * time.Second)
				_ = c.Close()
			}()
		}
	}
}

func rss(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

// scrape reads /metrics. The killer kills the HTTP server too, so a read
// that fails is tried again (for up to 5 s) rather than taken as zeros.
func scrape(addr string) []string {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if lines, err := scrapeOnce(&c, addr); err == nil || time.Now().After(deadline) {
			return lines
		}
	}
}

func scrapeOnce(c *http.Client, addr string) ([]string, error) {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || len(lines) == 0 {
		return nil, fmt.Errorf("metrics: %s, %d lines", resp.Status, len(lines))
	}
	return lines, nil
}

func metric(addr, name string) float64 {
	for _, l := range scrape(addr) {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

func sumMetric(addr, name string) float64 {
	sum := 0.0
	for _, l := range scrape(addr) {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], name+"{") {
			v, _ := strconv.ParseFloat(f[1], 64)
			sum += v
		}
	}
	return sum
}

func writeReport(t *testing.T, path, commit string, samples []sample, total sample, killErrs int) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Soak\n\n")
	fmt.Fprintf(&b, "Command: `make soak SOAK_DURATION=%s` (= `go test -tags soak -count=1 -timeout 0 -v ./test/soak -soak.duration=%s -soak.out=bench/SOAK.md`).\n\n", *duration, *duration)
	fmt.Fprintf(&b, "Run on %s, %s, of git %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), hostNote(), commit)
	if *duration < 30*time.Minute {
		fmt.Fprintf(&b, "**A short run (%s), not the 30-minute soak**: a trend over %d samples says little about leaks.\n\n", *duration, len(samples))
	}
	fmt.Fprintf(&b, "Spartan under test/sysd (systemd's part: the sockets, LISTEN_FDS, NotifyAccess=main, Restart=always). Load: %d qps open-loop UDP over 4 sockets plus 2 pipelined TCP clients at 100 qps each, names on every route (default upstream, a forward zone, *.mesos via master_list, spartan., localhost., zk.). `spartanctl kill` of a random tree node every %s, a SIGHUP reload every %s, hostile clients every second (a garbage TCP frame, a slowloris, 10 garbage datagrams; every 10 s a client that pipelines 5000 queries and never reads). Lost = no reply at all (the load waits 3 s after each minute); TCP queries whose connection closed unanswered are sent again, as RFC 7766 clients do, and counted as resent. Each row is the minute before it; RSS, fds and goroutines are of the main process at the end of the minute (it changes at each reload); restarts are the actor restarts of that process.\n\n", *qps-200, *killEvery, *reloadEach)
	b.WriteString("| min | pid | RSS kB | fds | goroutines | kills (total) | kills refused | restarts (pid) | reloads (total) | sent | answered | lost (UDP/TCP) | late >3s | TCP resent | p50 | p99 | p99.9 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d (%d/%d) | %d | %d | %s | %s | %s |\n",
			s.minute, s.pid, s.rssKB, s.fds, s.goroutines, s.kills, s.refused, s.restarts, s.reloads, s.sent, s.answered, s.lost, s.udpLost, s.tcpLost, s.late, s.resent,
			s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.p999.Round(time.Microsecond))
	}
	fmt.Fprintf(&b, "\nTotal: %d sent, %d answered, %d lost, %d late. Kill attempts refused (the ctl actor itself restarting, or a reload under way): %d.\n", total.sent, total.answered, total.lost, total.late, killErrs)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gitCommit names the checkout: its commit, and whether it had changes.
func gitCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty=-with-uncommitted-changes").Output()
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

func hostNote() string {
	out, _ := exec.Command("nproc").Output()
	return strings.TrimSpace(string(out)) + " cores, shared with other builds and tests"
}
