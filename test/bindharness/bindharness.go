// Package bindharness runs a real BIND9 named as an authoritative upstream
// for end-to-end and conformance tests. Everything it needs (named.conf, keys,
// signed zones, pid and session files) is generated in t.TempDir(), so tests
// never touch /etc/bind and several instances can run at once.
//
// The zones are fixed and described by the exported constants, so tests can
// ask for "a name with 100 A records" or "a record of an unknown type"
// without knowing the zone files.
package bindharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/harness"
)

// Zones and names served by every Named. Names are fully qualified.
const (
	// SignedZone is signed with NSEC (ECDSAP256SHA256 KSK + ZSK).
	SignedZone = "signed.test."
	// NSEC3Zone is signed with NSEC3 (no salt, 0 extra iterations).
	NSEC3Zone = "nsec3.test."
	// BigZone holds the large RRsets.
	BigZone = "big.test."
	// PlainZone holds the unsigned edge cases.
	PlainZone = "plain.test."

	NameSignedWWW = "www.signed.test." // A 192.0.2.10, AAAA 2001:db8::10 (signed)
	NameNSEC3WWW  = "www.nsec3.test."  // A 192.0.2.11 (signed, NSEC3)

	NameManyA   = "many.big.test."  // ManyCount A and ManyCount AAAA records
	NameTXT2K   = "txt2k.big.test." // one TXT RR of 8×255-byte strings: a ~2.1 KB answer (>512, <4096)
	NameTXT8K   = "txt8k.big.test." // four such TXT RRs: a ~8.3 KB answer (>4096; TC over UDP)
	NameA       = "a.plain.test."   // A 192.0.2.1
	NameNoData  = "nodata.plain.test."
	NameNX      = "nx.plain.test."      // does not exist: NXDOMAIN
	NameCNAME   = "c1.plain.test."      // c1 → c2 → c3 → a.plain.test.
	NameUnknown = "unknown.plain.test." // TYPE65400 \# 4 0A000001

	// ManyCount is how many A (and AAAA) records NameManyA has.
	ManyCount = 100
	// TypeUnknown is the RR type no DNS software knows.
	TypeUnknown uint16 = 65400
	// UnknownRdata is the RDATA of NameUnknown's record.
	UnknownRdata = "\x0a\x00\x00\x01"

	// ServerID is what named returns in NSID.
	ServerID = "bindharness"
	// TSIGKeyName and TSIGSecret form a hmac-sha256 key named accepts.
	TSIGKeyName = "bindharness-key."
	TSIGSecret  = "c3BhcnRhbi1iaW5kaGFybmVzcy10c2lnLXNlY3JldC0wMQ=="
)

// Named is one running named.
type Named struct {
	Addr netip.AddrPort // UDP and TCP, same port
	Dir  string         // working directory with named.conf and the zones
	Cmd  *exec.Cmd

	mu     sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
	err    error
}

// Log returns what named wrote to stderr so far.
func (n *Named) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

type logWriter struct{ n *Named }

func (w logWriter) Write(p []byte) (int, error) {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	return w.n.log.Write(p)
}

// Start generates keys, zones and named.conf in a temp dir, starts named on
// ip and a free port, and waits until it answers. named only listens on
// addresses configured on an interface, so on a host whose lo carries just
// 127.0.0.1/8 the ip must be "127.0.0.1" (any other 127.x address is never
// bound and Start fails).
// named is stopped at Cleanup.
func Start(t testing.TB, ip string) *Named {
	t.Helper()
	namedBin := harness.RequireTool(t, "named")
	tools := signTools{keygen: harness.RequireTool(t, "dnssec-keygen"), signzone: harness.RequireTool(t, "dnssec-signzone")}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("bindharness: bad ip %q: %v", ip, err)
	}
	if !isInterfaceAddr(addr) {
		t.Fatalf("bindharness: %s is not configured on any interface, and named listens only on interface addresses (use 127.0.0.1)", addr)
	}
	dir := t.TempDir()
	if err := writeZones(dir, tools); err != nil {
		t.Fatalf("bindharness: %v", err)
	}
	// The port is found free then handed to named; another process may take
	// it in between, so retry a few times on an early exit.
	var lastLog string
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort(addr)
		if err != nil {
			t.Fatalf("bindharness: %v", err)
		}
		n := &Named{Addr: netip.AddrPortFrom(addr, port), Dir: dir, exited: make(chan struct{})}
		if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(namedConf(dir, n.Addr)), 0o644); err != nil {
			t.Fatalf("bindharness: write named.conf: %v", err)
		}
		// -n 1: one worker thread is plenty and keeps startup cheap on a small machine.
		n.Cmd = exec.Command(namedBin, "-g", "-4", "-n", "1", "-c", filepath.Join(dir, "named.conf"))
		n.Cmd.Dir = dir
		n.Cmd.Stdout = logWriter{n}
		n.Cmd.Stderr = logWriter{n}
		n.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := n.Cmd.Start(); err != nil {
			t.Fatalf("bindharness: start named: %v", err)
		}
		go func() {
			err := n.Cmd.Wait()
			n.mu.Lock()
			n.err = err
			n.mu.Unlock()
			close(n.exited)
		}()
		if err := n.waitReady(10 * time.Second); err != nil {
			n.kill()
			lastLog = n.Log()
			if strings.Contains(lastLog, "address in use") {
				continue // lost the port race
			}
			t.Fatalf("bindharness: named not ready: %v\n%s", err, lastLog)
		}
		t.Cleanup(func() {
			n.stop()
			if t.Failed() {
				t.Logf("bindharness: named log (%s):\n%s", n.Addr, n.Log())
			}
		})
		return n
	}
	t.Fatalf("bindharness: named kept exiting at startup; last log:\n%s", lastLog)
	return nil
}

func (n *Named) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion(PlainZone, dns.TypeSOA)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			return errors.New("named exited")
		default:
		}
		r, _, err := c.Exchange(q, n.Addr.String())
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			// TCP too: tests use both.
			ct := &dns.Client{Net: "tcp", Timeout: 500 * time.Millisecond}
			if _, _, err := ct.Exchange(q, n.Addr.String()); err == nil {
				return nil
			}
		}
		lastErr = err
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("no SOA answer from %s within %v: %v", n.Addr, limit, lastErr)
}

func (n *Named) kill() {
	if n.Cmd.Process != nil {
		_ = n.Cmd.Process.Kill()
	}
	<-n.exited
}

func (n *Named) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		n.kill()
	}
}

// Alive reports whether named is still running.
func (n *Named) Alive() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func isInterfaceAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: let named try
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr() == a {
			return true
		}
	}
	return false
}

func freePort(addr netip.Addr) (uint16, error) {
	for i := 0; i < 20; i++ {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		if err != nil {
			return 0, fmt.Errorf("find free port on %s: %w", addr, err)
		}
		port := uint16(u.LocalAddr().(*net.UDPAddr).Port)
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no port free for both UDP and TCP on %s", addr)
}

func namedConf(dir string, addr netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, `options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on port %[4]d { %[5]s; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	allow-transfer { none; };
	notify no;
	dnssec-validation no;
	server-id %[6]q;
	// Server cookies hash the client address and the time, which would make
	// direct and proxied answers differ for reasons unrelated to the proxy.
	answer-cookie no;
	// No rotation ("fixed" is compiled out of Debian's named) so that two queries for one RRset get identical bytes.
	rrset-order { order none; };
	minimal-responses no;
	max-udp-size 4096;
	edns-udp-size 4096;
	querylog no;
};
controls { };
key %[7]q {
	algorithm hmac-sha256;
	secret %[8]q;
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"),
		addr.Port(), addr.Addr(), ServerID, strings.TrimSuffix(TSIGKeyName, "."), TSIGSecret)
	for _, z := range []struct{ name, file string }{
		{SignedZone, "signed.test.db.signed"},
		{NSEC3Zone, "nsec3.test.db.signed"},
		{BigZone, "big.test.db"},
		{PlainZone, "plain.test.db"},
	} {
		fmt.Fprintf(&b, "zone %q { type primary; file %q; };\n", strings.TrimSuffix(z.name, "."), z.file)
	}
	return b.String()
}

func soa(zone string) string {
	return fmt.Sprintf("$TTL 300\n$ORIGIN %s\n@ IN SOA ns.%s hostmaster.%s 1 3600 600 86400 300\n@ IN NS ns.%s\nns IN A 127.0.0.1\n",
		zone, zone, zone, zone)
}

// txtRR returns one TXT record of eight 255-byte strings, all made of c.
func txtRR(owner string, c byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s IN TXT", owner)
	for i := 0; i < 8; i++ {
		s := strings.Repeat(string(c), 254) + string(rune('0'+i))
		fmt.Fprintf(&b, " %q", s)
	}
	b.WriteString("\n")
	return b.String()
}

// signTools are the resolved paths of the DNSSEC tools (they live in
// /usr/sbin on some systems, which is not always on PATH).
type signTools struct{ keygen, signzone string }

func writeZones(dir string, tools signTools) error {
	files := map[string]string{}

	signed := soa(SignedZone) + "www IN A 192.0.2.10\nwww IN AAAA 2001:db8::10\ntxt IN TXT \"hello signed\"\n"
	files["signed.test.db"] = signed
	files["nsec3.test.db"] = soa(NSEC3Zone) + "www IN A 192.0.2.11\n"

	var big strings.Builder
	big.WriteString(soa(BigZone))
	for i := 1; i <= ManyCount; i++ {
		fmt.Fprintf(&big, "many IN A 10.0.%d.%d\n", i/256, i%256)
		fmt.Fprintf(&big, "many IN AAAA 2001:db8::%x\n", i)
	}
	big.WriteString(txtRR("txt2k", 'a'))
	for _, c := range []byte("wxyz") {
		big.WriteString(txtRR("txt8k", c))
	}
	files["big.test.db"] = big.String()

	files["plain.test.db"] = soa(PlainZone) + `a IN A 192.0.2.1
nodata IN A 192.0.2.2
unknown IN TYPE65400 \# 4 0A000001
c1 IN CNAME c2
c2 IN CNAME c3
c3 IN CNAME a
`
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write zone %s: %w", name, err)
		}
	}
	if err := signZone(tools, dir, SignedZone, "signed.test.db", nil); err != nil {
		return err
	}
	return signZone(tools, dir, NSEC3Zone, "nsec3.test.db", []string{"-3", "-", "-H", "0"})
}

// signZone makes a KSK and a ZSK for zone and signs file into file.signed.
func signZone(tools signTools, dir, zone, file string, extra []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keydir := filepath.Join(dir, "keys-"+strings.TrimSuffix(zone, "."))
	if err := os.MkdirAll(keydir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", keydir, err)
	}
	for _, args := range [][]string{
		{"-q", "-K", keydir, "-a", "ECDSAP256SHA256", "-f", "KSK", zone},
		{"-q", "-K", keydir, "-a", "ECDSAP256SHA256", zone},
	} {
		out, err := exec.CommandContext(ctx, tools.keygen, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("dnssec-keygen %v: %w: %s", args, err, out)
		}
	}
	// -S: smart signing picks up both keys from keydir and adds the DNSKEYs.
	args := append([]string{"-S", "-K", keydir, "-o", zone, "-f", file + ".signed"}, extra...)
	args = append(args, file)
	cmd := exec.CommandContext(ctx, tools.signzone, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dnssec-signzone %v: %w: %s", args, err, out)
	}
	return nil
}
