package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// ResolvConfNameservers returns the addresses of the nameserver lines of the
// resolv.conf at path, in file order and without duplicates. Comments ('#'
// or ';' at the start of a line, or after the address) and every other
// directive are ignored. A nameserver line whose address does not parse is
// skipped, as the C resolver skips it, so that one typo in a file Spartan
// does not own cannot stop it from starting. IPv4-mapped IPv6 addresses are
// unmapped. Only a failure to read the file is an error.
func ResolvConfNameservers(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolv.conf: %w", err)
	}
	return parseResolvConf(data), nil
}

func parseResolvConf(data []byte) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	// Lines of a resolv.conf are short; a huge one (a search list) must not
	// abort the scan and lose the nameservers after it.
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		a = a.Unmap()
		if seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}
