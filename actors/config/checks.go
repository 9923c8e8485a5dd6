// Cross-key checks and the values derived from several keys.

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// finish derives the values that depend on several keys and runs the
// cross-key checks.
func (p *parser) finish(resolvConf string) error {
	c := p.cfg

	c.BindIPs = slices.DeleteFunc(c.BindIPs, func(a netip.Addr) bool {
		return slices.Contains(c.BindIPBlacklist, a)
	})
	if len(c.BindIPs) == 0 {
		return keyErr("bind_ips", "no bind IP is left once bind_ip_blacklist is removed")
	}
	if !c.UDPServerEnabled && !c.TCPServerEnabled {
		return keyErr("udp_server_enabled", "udp_server_enabled and tcp_server_enabled are both false: nothing would be served")
	}

	switch c.MasterSource {
	case MasterSourceExhibitor:
		if c.ExhibitorAddress == "" {
			return keyErr("exhibitor_address", "master_source is exhibitor but exhibitor_address (or env %s) is not set", EnvExhibitorAddress)
		}
	case MasterSourceExhibitorURI:
		if c.ExhibitorURI == "" {
			return keyErr("exhibitor_uri", "master_source is exhibitor_uri but exhibitor_uri (or env %s) is not set", EnvExhibitorURI)
		}
	case MasterSourceZookeeper:
		if len(c.ZookeeperServers) == 0 {
			return keyErr("zookeeper_servers", "master_source is zookeeper but zookeeper_servers is empty")
		}
	}

	if c.Watchdog.Grace < c.Watchdog.Interval {
		return keyErr("watchdog.grace", "grace %s is shorter than the check interval %s: one slow check would kill the process",
			c.Watchdog.Grace, c.Watchdog.Interval)
	}

	if !p.set["upstream_resolvers"] && resolvConf != "" {
		ns, err := ResolvConfNameservers(resolvConf)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &KeyError{Key: "upstream_resolvers", Err: fmt.Errorf("not set, and the default from %s failed: %w", resolvConf, err)}
		}
		for _, a := range ns {
			// A resolv.conf generated for this node lists Spartan itself;
			// forwarding to it would loop.
			if a.IsUnspecified() || slices.Contains(c.BindIPs, a) {
				continue
			}
			c.UpstreamResolvers = append(c.UpstreamResolvers, netip.AddrPortFrom(a, 53))
		}
		// Nothing left is not an error: names no zone claims then get
		// SERVFAIL (the query path logs it), while the local zones, .mesos
		// and forward_zones keep working.
	}

	if err := p.checkLoops(); err != nil {
		return err
	}
	// "[]" in the file and an absent key give the same Config, so callers
	// and DeepEqual-based tests need not tell nil from empty.
	if len(c.BindIPBlacklist) == 0 {
		c.BindIPBlacklist = nil
	}
	if len(c.ZookeeperServers) == 0 {
		c.ZookeeperServers = nil
	}
	if len(c.UpstreamResolvers) == 0 {
		c.UpstreamResolvers = nil
	}
	return nil
}

// checkLoops refuses an upstream that is Spartan's own listener: every
// query routed to it would come straight back until it timed out.
func (p *parser) checkLoops() error {
	c := p.cfg
	self := func(ap netip.AddrPort) bool {
		if !slices.Contains(c.BindIPs, ap.Addr()) {
			return false
		}
		return (c.UDPServerEnabled && ap.Port() == uint16(c.UDPPort)) ||
			(c.TCPServerEnabled && ap.Port() == uint16(c.TCPPort))
	}
	for _, ap := range c.UpstreamResolvers {
		if self(ap) {
			return keyErr("upstream_resolvers", "%s is one of Spartan's own listeners (a forwarding loop)", ap)
		}
	}
	zones := make([]string, 0, len(c.ForwardZones))
	for z := range c.ForwardZones {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, z := range zones {
		for _, ap := range c.ForwardZones[z] {
			if self(ap) {
				return keyErr(zoneKey(strings.TrimSuffix(z, ".")), "%s is one of Spartan's own listeners (a forwarding loop)", ap)
			}
		}
	}
	return nil
}
