package masters

import (
	"net/netip"
	"testing"
)

// The parsers read data from the network and from ZooKeeper: whatever they
// are fed, they must not panic, and a nil error must mean a usable result.

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
		n := Normalize(ips)
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
		if host != "" && checkHostname(host) != nil {
			t.Fatalf("accepted bad hostname %q", host)
		}
	})
}
