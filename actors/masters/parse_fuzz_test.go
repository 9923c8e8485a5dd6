package masters

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The parsers read data from the network and from ZooKeeper: whatever they
// are fed, they must not panic, and a nil error must mean a usable result.
// Besides the seeds added here, testdata/fuzz/<target>/ holds a corpus of
// real documents (Exhibitor status, master_list files, MasterInfo znodes).

func FuzzParseExhibitor(f *testing.F) {
	for _, s := range []string{realExhibitor, `[]`, `null`, `[{"hostname":""}]`, `[{"hostname":"a..b"}]`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		hosts, err := ParseExhibitor(body)
		if err != nil {
			return
		}
		if len(hosts) == 0 {
			t.Fatal("no error and no hosts")
		}
		for _, h := range hosts {
			if checkHostname(h) != nil {
				t.Fatalf("accepted bad hostname %q", h)
			}
			if h == "" || h != strings.TrimSpace(h) {
				t.Fatalf("hostname %q is empty or not trimmed", h)
			}
		}
	})
}

func FuzzParseMasterList(f *testing.F) {
	for _, s := range []string{`["10.0.0.1","10.0.0.2"]`, `[]`, `[null]`, `["::ffff:1.2.3.4"]`, `["fe80::1%eth0"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ips, err := ParseMasterList(body)
		if err != nil {
			return
		}
		if len(ips) == 0 {
			t.Fatal("no error and no addresses")
		}
		for _, ip := range ips {
			if !ip.IsValid() {
				t.Fatal("invalid address accepted")
			}
		}
		orig := slices.Clone(ips)
		n := Normalize(ips)
		if !slices.Equal(ips, orig) {
			t.Fatal("Normalize modified its input")
		}
		// The same set, in one spelling: every master is in the output once,
		// unmapped, and nothing else is.
		for _, ip := range ips {
			if !slices.Contains(n, ip.Unmap()) {
				t.Fatalf("Normalize(%v) = %v lost %v", ips, n, ip)
			}
		}
		for _, ip := range n {
			if ip.Is4In6() || !slices.ContainsFunc(ips, func(a netip.Addr) bool { return a.Unmap() == ip }) {
				t.Fatalf("Normalize(%v) = %v invented or kept mapped %v", ips, n, ip)
			}
		}
		if len(n) == 0 || len(n) > len(ips) {
			t.Fatalf("Normalize(%v) = %v", ips, n)
		}
		for i := 1; i < len(n); i++ {
			if n[i-1].Compare(n[i]) >= 0 {
				t.Fatalf("Normalize not strictly sorted: %v", n)
			}
		}
	})
}

func FuzzParseMasterInfo(f *testing.F) {
	for _, s := range []string{masterInfoJSON, `{"hostname":"m1"}`, `{"address":{"ip":"x"}}`, `null`, "\x0a\x24"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ip, host, err := ParseMasterInfo(body)
		if err != nil {
			if ip != (netip.Addr{}) || host != "" {
				t.Fatal("error with a result")
			}
			return
		}
		if ip.IsValid() == (host != "") {
			t.Fatalf("want exactly one of address and hostname, got (%v, %q)", ip, host)
		}
		if host != "" && (checkHostname(host) != nil || host != strings.TrimSpace(host)) {
			t.Fatalf("accepted bad hostname %q", host)
		}
		if _, err := netip.ParseAddr(host); host != "" && err == nil {
			t.Fatalf("IP literal %q returned as a hostname to resolve", host)
		}
	})
}
