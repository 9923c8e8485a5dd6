package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// zoneName is the zone every upstream serves; all benchmark queries are for
// names that exist in it, so a correct forwarder answers every one NOERROR.
const zoneName = "bench.test."

// zoneNames lists the owner names of the A records of the zone.
func zoneNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host%04d.%s", i, zoneName)
	}
	return names
}

// writeZone writes the zone file served by every NSD instance. Every
// record has the same TTL: the cache scenarios keep the upstreams frozen
// for longer than it.
func writeZone(path string, names []string, ttl time.Duration) error {
	var b strings.Builder
	secs := int(ttl.Seconds())
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", zoneName, secs)
	fmt.Fprintf(&b, "@ IN SOA ns1 hostmaster 1 3600 600 86400 %d\n", secs)
	fmt.Fprintf(&b, "@ IN NS ns1\nns1 IN A 127.0.1.1\n")
	for i, n := range names {
		fmt.Fprintf(&b, "%s IN A 10.%d.%d.%d\n", n, (i>>16)&255, (i>>8)&255, i&255)
	}
	return writeFile(path, b.String())
}

// writeQueryFile writes the dnsperf data file: one "name type" per line.
func writeQueryFile(path string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s A\n", n)
	}
	return writeFile(path, b.String())
}

// packQueries pre-packs one query per name (ID 0, RD set as a stub resolver
// sends it) so the open-loop sender only patches the ID.
func packQueries(names []string) ([][]byte, error) {
	out := make([][]byte, len(names))
	for i, n := range names {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("pack query %s: %w", n, err)
		}
		out[i] = b
	}
	return out, nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mkdir for %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
