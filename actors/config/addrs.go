// Addresses: IPs, upstreams ("ip[:port]" and the legacy ["ip", port]),
// and forward_zones in both its forms.

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// parseIP parses a bare address (no port). Unspecified and multicast
// addresses can be neither listened on per-IP nor forwarded to.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%q is not a usable unicast address", s)
	}
	return a, nil
}

func parseIPList(v any) ([]netip.Addr, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf(`expected an array of IP strings, got %s`, describe(v))
	}
	return parseEntries(arr, func(e any) (netip.Addr, error) {
		s, ok := e.(string)
		if !ok {
			return netip.Addr{}, fmt.Errorf("expected an IP string, got %s", describe(e))
		}
		return parseIP(s)
	})
}

// parseAddrPort parses "ip", "ip:port", "[v6]:port" or a bare v6 address;
// the port defaults to 53.
func parseAddrPort(s string) (netip.AddrPort, error) {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := parseIP(s[1 : len(s)-1])
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(a, 53), nil
	}
	if !strings.HasPrefix(s, "[") {
		if a, err := parseIP(s); err == nil {
			return netip.AddrPortFrom(a, 53), nil
		} else if !strings.Contains(s, ":") || strings.Count(s, ":") > 1 {
			// No colon, or several (a v6 address, which needs brackets to
			// carry a port): the address itself is wrong.
			return netip.AddrPort{}, err
		}
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf(`%q is not "ip", "ip:port" or "[ipv6]:port": %w`, s, err)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0 is not 1..65535", s)
	}
	a, err := parseIP(ap.Addr().String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// parseUpstream accepts "ip[:port]" or the legacy pair ["ip", port].
func parseUpstream(v any) (netip.AddrPort, error) {
	switch x := v.(type) {
	case string:
		return parseAddrPort(x)
	case []any:
		if len(x) != 2 {
			return netip.AddrPort{}, fmt.Errorf(`legacy upstream must be ["ip", port], got %d elements`, len(x))
		}
		s, ok := x[0].(string)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf(`legacy upstream ["ip", port]: ip must be a string, got %s`, describe(x[0]))
		}
		a, err := parseIP(s)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf(`legacy upstream ["ip", port]: %w`, err)
		}
		n, ok := x[1].(json.Number)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf(`legacy upstream ["ip", port]: port must be an integer, got %s`, describe(x[1]))
		}
		port, err := parsePort(n.String())
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf(`legacy upstream ["ip", port]: %w`, err)
		}
		return netip.AddrPortFrom(a, port), nil
	}
	return netip.AddrPort{}, fmt.Errorf(`expected "ip[:port]", got %s`, describe(v))
}

func parseUpstreamList(v any, nonEmpty bool) ([]netip.AddrPort, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf(`expected an array of "ip[:port]" strings, got %s`, describe(v))
	}
	if nonEmpty && len(arr) == 0 {
		return nil, errors.New("empty list: give at least one upstream, or leave the key out")
	}
	return parseEntries(arr, parseUpstream)
}

// parseEntries parses every entry of a JSON array with parse, naming the
// entry in an error and refusing one listed twice.
func parseEntries[T interface {
	comparable
	fmt.Stringer
}](arr []any, parse func(any) (T, error)) ([]T, error) {
	out := make([]T, 0, len(arr))
	for i, e := range arr {
		x, err := parse(e)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if slices.Contains(out, x) {
			return nil, fmt.Errorf("entry %d: %s listed twice", i, x)
		}
		out = append(out, x)
	}
	return out, nil
}

// parseForwardZones accepts the map form {"zone": ["ip[:port]", ...]} and
// the legacy list form [["zone", [["ip", port], ...]], ...].
func parseForwardZones(v any) (map[string][]netip.AddrPort, error) {
	out := map[string][]netip.AddrPort{}
	// written maps a normalised zone to how the file spelled it, to report
	// two spellings of one zone.
	written := map[string]string{}
	add := func(zone string, ups any) error {
		norm, err := normalizeZone(zone)
		if err != nil {
			return &KeyError{Key: zoneKey(zone), Err: err}
		}
		if prev, dup := written[norm]; dup {
			return &KeyError{Key: zoneKey(zone), Err: fmt.Errorf("zone %s is also given as %q", norm, prev)}
		}
		list, err := parseUpstreamList(ups, false)
		if err != nil {
			return &KeyError{Key: zoneKey(zone), Err: err}
		}
		if len(list) == 0 {
			return &KeyError{Key: zoneKey(zone), Err: errors.New("no upstreams for the zone")}
		}
		written[norm] = zone
		out[norm] = list
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		zones := make([]string, 0, len(x))
		for z := range x {
			zones = append(zones, z)
		}
		sort.Strings(zones)
		for _, z := range zones {
			if err := add(z, x[z]); err != nil {
				return nil, err
			}
		}
	case []any:
		for i, e := range x {
			pair, ok := e.([]any)
			if !ok || len(pair) != 2 {
				return nil, &KeyError{Key: fmt.Sprintf("forward_zones[%d]", i),
					Err: fmt.Errorf(`legacy form: expected ["zone", [["ip", port], ...]], got %s`, describe(e))}
			}
			zone, ok := pair[0].(string)
			if !ok {
				return nil, &KeyError{Key: fmt.Sprintf("forward_zones[%d]", i),
					Err: fmt.Errorf("legacy form: zone must be a string, got %s", describe(pair[0]))}
			}
			if err := add(zone, pair[1]); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf(`expected an object {"zone": ["ip[:port]", ...]} or the legacy list [["zone", [["ip", port], ...]], ...], got %s`, describe(v))
	}
	return out, nil
}

// normalizeZone lower-cases a zone and makes it fully qualified, checking
// the DNS length limits.
func normalizeZone(z string) (string, error) {
	if z == "" {
		return "", errors.New("empty zone name")
	}
	z = strings.ToLower(z)
	if z == "." {
		return z, nil
	}
	z = strings.TrimSuffix(z, ".")
	if len(z) > 253 {
		return "", fmt.Errorf("zone name is %d bytes, longer than 253", len(z))
	}
	for label := range strings.SplitSeq(z, ".") {
		if label == "" {
			return "", errors.New("zone name has an empty label")
		}
		if len(label) > 63 {
			return "", fmt.Errorf("label %q is longer than 63 bytes", label)
		}
		for _, r := range label {
			if r <= ' ' || r > 0x7e {
				return "", fmt.Errorf("zone name contains the invalid character %q", r)
			}
		}
	}
	return z + ".", nil
}
