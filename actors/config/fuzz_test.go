package config

import (
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseConfig feeds arbitrary documents to Parse. The operator's file is
// trusted less than it looks (generated, templated, hand-edited): Parse must
// never panic, must be deterministic, must name a key in every key error,
// and a Config it accepts must satisfy every invariant the rest of Spartan
// relies on without checking again. Seeds: testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, nil, "")
		cfg2, err2 := Parse(data, nil, "")
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Parse is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			if cfg != nil {
				t.Fatal("error with a Config")
			}
			fzCheckKeyErrors(t, err, fzEmptyKey.Match(data))
			return
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("Parse is not deterministic:\n%+v\n%+v", cfg, cfg2)
		}
		if err := fzCheckConfig(cfg); err != nil {
			t.Fatalf("accepted an invalid config: %v\ndocument: %q", err, data)
		}
	})
}

// fzEmptyKey finds a member named "" in a document: the one key that is
// named by the empty string (the message still shows it, as `""`).
var fzEmptyKey = regexp.MustCompile(`""\s*:`)

// fzCheckKeyErrors walks the (possibly joined) error tree: every KeyError
// names its key, so cmd/spartan can tell the operator which one.
func fzCheckKeyErrors(t *testing.T, err error, emptyKeyOK bool) {
	t.Helper()
	if err.Error() == "" {
		t.Fatal("empty error message")
	}
	if ke, ok := err.(*KeyError); ok && ((ke.Key == "" && !emptyKeyOK) || ke.Err == nil) {
		t.Fatalf("KeyError without a key or a cause: %#v", ke)
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			fzCheckKeyErrors(t, e, emptyKeyOK)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			fzCheckKeyErrors(t, e, emptyKeyOK)
		}
	}
}

func fzErr(format string, args ...any) error { return keyErr("fuzz", format, args...) }

// fzCheckConfig checks the invariants of an accepted Config.
func fzCheckConfig(c *Config) error {
	for name, p := range map[string]int{"udp_port": c.UDPPort, "tcp_port": c.TCPPort, "mesos_dns_port": c.MesosDNSPort} {
		if p < 1 || p > 65535 {
			return fzErr("%s %d", name, p)
		}
	}
	if c.HandlerLimit < 1 {
		return fzErr("handler_limit %d", c.HandlerLimit)
	}
	if !c.UDPServerEnabled && !c.TCPServerEnabled {
		return fzErr("no server enabled")
	}
	for name, d := range map[string]time.Duration{
		"upstream_timeout": c.UpstreamTimeout, "masters_refresh_interval_normal": c.MastersRefreshNormal,
		"masters_refresh_interval_fail": c.MastersRefreshFail, "exhibitor_timeout": c.ExhibitorTimeout,
		"watchdog.interval": c.Watchdog.Interval, "watchdog.grace": c.Watchdog.Grace,
		"limits.tcp_idle_timeout": c.Limits.TCPIdleTimeout, "limits.tcp_read_timeout": c.Limits.TCPReadTimeout,
	} {
		if d <= 0 {
			return fzErr("%s %v", name, d)
		}
	}
	if c.Watchdog.Grace < c.Watchdog.Interval {
		return fzErr("watchdog grace %v < interval %v", c.Watchdog.Grace, c.Watchdog.Interval)
	}
	l := c.Limits
	if l.TCPConnections < 1 || l.TCPPipeline < 1 || l.UDPPayloadMax < 512 || l.UDPPayloadMax > 65535 ||
		l.TCPMessageMax < 512 || l.TCPMessageMax > 65535 {
		return fzErr("limits %+v", l)
	}

	if len(c.BindIPs) == 0 {
		return fzErr("no bind IP")
	}
	usable := func(a netip.Addr) bool {
		return a.IsValid() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast()
	}
	for i, a := range c.BindIPs {
		if !usable(a) || slices.Contains(c.BindIPs[:i], a) || slices.Contains(c.BindIPBlacklist, a) {
			return fzErr("bind IP %v", a)
		}
	}
	if c.BindIPBlacklist != nil && len(c.BindIPBlacklist) == 0 {
		return fzErr("empty non-nil bind_ip_blacklist")
	}
	self := func(ap netip.AddrPort) bool {
		return slices.Contains(c.BindIPs, ap.Addr()) &&
			(c.UDPServerEnabled && int(ap.Port()) == c.UDPPort || c.TCPServerEnabled && int(ap.Port()) == c.TCPPort)
	}
	checkUpstreams := func(what string, ups []netip.AddrPort) error {
		for i, ap := range ups {
			if !usable(ap.Addr()) || ap.Port() == 0 || slices.Contains(ups[:i], ap) {
				return fzErr("%s upstream %v", what, ap)
			}
			if self(ap) {
				return fzErr("%s upstream %v is a listener of Spartan", what, ap)
			}
		}
		return nil
	}
	if c.UpstreamResolvers != nil && len(c.UpstreamResolvers) == 0 {
		return fzErr("empty non-nil upstream_resolvers")
	}
	if err := checkUpstreams("default", c.UpstreamResolvers); err != nil {
		return err
	}
	if c.ForwardZones == nil {
		return fzErr("nil forward_zones")
	}
	for z, ups := range c.ForwardZones {
		// Routing compares lower-case FQDNs by suffix: a key in any other
		// form would never match.
		if n, err := normalizeZone(z); err != nil || n != z || !strings.HasSuffix(z, ".") {
			return fzErr("zone key %q is not normalised", z)
		}
		if len(ups) == 0 {
			return fzErr("zone %q without upstreams", z)
		}
		if err := checkUpstreams(z, ups); err != nil {
			return err
		}
	}

	if validMasterSource(c.MasterSource) != nil {
		return fzErr("master_source %q", c.MasterSource)
	}
	switch c.MasterSource {
	case MasterSourceExhibitor:
		if validExhibitorAddress(c.ExhibitorAddress) != nil {
			return fzErr("exhibitor_address %q", c.ExhibitorAddress)
		}
	case MasterSourceExhibitorURI:
		if validExhibitorURI(c.ExhibitorURI) != nil {
			return fzErr("exhibitor_uri %q", c.ExhibitorURI)
		}
	case MasterSourceZookeeper:
		if len(c.ZookeeperServers) == 0 {
			return fzErr("zookeeper without servers")
		}
	}
	if c.ZookeeperServers != nil && len(c.ZookeeperServers) == 0 {
		return fzErr("empty non-nil zookeeper_servers")
	}
	for i, s := range c.ZookeeperServers {
		if validHostPort(s) != nil || slices.Contains(c.ZookeeperServers[:i], s) {
			return fzErr("zookeeper server %q", s)
		}
	}
	if validZKPath(c.ZookeeperMesosPath) != nil {
		return fzErr("zookeeper_mesos_path %q", c.ZookeeperMesosPath)
	}
	if validPath(c.MasterListFile) != nil {
		return fzErr("master_list_file %q", c.MasterListFile)
	}
	if validIfName(c.Interface.Name) != nil {
		return fzErr("interface.name %q", c.Interface.Name)
	}
	if c.HTTPListen != "" {
		if _, err := netip.ParseAddrPort(c.HTTPListen); err != nil {
			return fzErr("http_listen %q", c.HTTPListen)
		}
	}
	if validSocketPath(c.CtlSocket) != nil {
		return fzErr("ctl_socket %q", c.CtlSocket)
	}
	return nil
}
