package masters

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// exhibitorServer is one entry of Exhibitor's /exhibitor/v1/cluster/status.
// Only hostname matters; the pointer tells "absent" from "empty".
type exhibitorServer struct {
	Code        int     `json:"code"`
	Description string  `json:"description"`
	Hostname    *string `json:"hostname"`
	IsLeader    bool    `json:"isLeader"`
}

// ParseExhibitor parses Exhibitor's cluster status, a JSON array of
// {"code", "description", "hostname", "isLeader"}, and returns every
// hostname (each one is a master, whatever its code) in document order.
// An empty array, an entry without a hostname or anything that is not such
// an array is an error.
func ParseExhibitor(body []byte) ([]string, error) {
	var servers []*exhibitorServer
	if err := json.Unmarshal(body, &servers); err != nil {
		return nil, fmt.Errorf("exhibitor status is not a JSON array of servers: %w", err)
	}
	if len(servers) == 0 {
		return nil, errors.New("exhibitor status lists no servers")
	}
	hosts := make([]string, 0, len(servers))
	for i, s := range servers {
		if s == nil {
			return nil, fmt.Errorf("exhibitor status entry %d is null", i)
		}
		if s.Hostname == nil {
			return nil, fmt.Errorf("exhibitor status entry %d has no hostname", i)
		}
		h := strings.TrimSpace(*s.Hostname)
		if h == "" {
			return nil, fmt.Errorf("exhibitor status entry %d has an empty hostname", i)
		}
		if err := checkHostname(h); err != nil {
			return nil, fmt.Errorf("exhibitor status entry %d: %w", i, err)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// checkHostname accepts an IP literal or something that can be a DNS name,
// so garbage is reported as such rather than as a failed lookup.
func checkHostname(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	name := strings.TrimSuffix(h, ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("hostname %q is not a valid IP or DNS name", h)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("hostname %q is not a valid IP or DNS name", h)
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("hostname %q is not a valid IP or DNS name", h)
			}
		}
	}
	return nil
}

// ParseMasterList parses a master_list file: a JSON array of IP strings.
// The result keeps the file's order (Normalize sorts). An empty array or an
// entry that is not an IP is an error.
func ParseMasterList(body []byte) ([]netip.Addr, error) {
	var entries []*string
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("master list is not a JSON array of IP strings: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("master list is empty")
	}
	ips := make([]netip.Addr, 0, len(entries))
	for i, e := range entries {
		if e == nil {
			return nil, fmt.Errorf("master list entry %d is null", i)
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(*e))
		if err != nil {
			return nil, fmt.Errorf("master list entry %d (%q) is not an IP address", i, *e)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

// masterInfo is the part of Mesos' MasterInfo JSON (the json.info_* znodes)
// that locates a master.
type masterInfo struct {
	Address *struct {
		IP       string `json:"ip"`
		Hostname string `json:"hostname"`
		Port     int    `json:"port"`
	} `json:"address"`
	Hostname string `json:"hostname"`
}

// ParseMasterInfo parses a Mesos MasterInfo JSON document and returns the
// master's address.ip. Without one it falls back to the top-level hostname
// (then address.hostname): an IP literal there is returned as the address,
// anything else is returned as the hostname for the caller to resolve.
// Exactly one of the address and the hostname is set when err is nil.
func ParseMasterInfo(body []byte) (netip.Addr, string, error) {
	var mi *masterInfo
	if err := json.Unmarshal(body, &mi); err != nil {
		return netip.Addr{}, "", fmt.Errorf("MasterInfo is not a JSON object: %w", err)
	}
	if mi == nil {
		return netip.Addr{}, "", errors.New("MasterInfo is null")
	}
	if mi.Address != nil && mi.Address.IP != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(mi.Address.IP))
		if err != nil {
			return netip.Addr{}, "", fmt.Errorf("MasterInfo address.ip %q is not an IP address", mi.Address.IP)
		}
		return ip, "", nil
	}
	for _, h := range []string{mi.Hostname, addressHostname(mi)} {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			return ip, "", nil
		}
		if err := checkHostname(h); err != nil {
			return netip.Addr{}, "", fmt.Errorf("MasterInfo: %w", err)
		}
		return netip.Addr{}, h, nil
	}
	return netip.Addr{}, "", errors.New("MasterInfo has neither address.ip nor hostname")
}

func addressHostname(mi *masterInfo) string {
	if mi.Address == nil {
		return ""
	}
	return mi.Address.Hostname
}

// Normalize returns the valid addresses of ips, IPv4-mapped IPv6 unmapped,
// deduplicated and sorted by netip.Addr.Compare. It never modifies ips.
func Normalize(ips []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if ip.IsValid() {
			out = append(out, ip.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
