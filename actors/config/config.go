// Package config turns Spartan's configuration file and the overriding
// environment into a validated Config, and nothing else: the live state
// built from it (snapshots, upstream health, the config actor) is in
// actors/state.
//
// Where each step lives: load.go (Load, Parse), json.go (the document),
// keys.go (the key table), valid.go and addrs.go (value validators),
// env.go (environment overrides), checks.go (cross-key checks),
// resolvconf.go (the default upstreams).
package config

import (
	"net/netip"
	"time"
)

// Config is the parsed and validated configuration file. It never changes
// after Load returns; everything that changes at run time lives in
// state.Snapshot.
type Config struct {
	UpstreamResolvers []netip.AddrPort            // upstream_resolvers
	ForwardZones      map[string][]netip.AddrPort // forward_zones: lower-case FQDN ("example.com.") -> upstreams
	BindIPs           []netip.Addr                // bind_ips minus bind_ip_blacklist
	BindIPBlacklist   []netip.Addr                // bind_ip_blacklist
	UDPPort           int                         // udp_port
	TCPPort           int                         // tcp_port
	UDPServerEnabled  bool                        // udp_server_enabled
	TCPServerEnabled  bool                        // tcp_server_enabled
	HandlerLimit      int                         // handler_limit
	UpstreamTimeout   time.Duration               // upstream_timeout

	MasterSource         string        // master_source: exhibitor|exhibitor_uri|master_list|zookeeper|none
	ExhibitorAddress     string        // exhibitor_address
	ExhibitorURI         string        // exhibitor_uri
	MasterListFile       string        // master_list_file
	ZookeeperServers     []string      // zookeeper_servers
	ZookeeperMesosPath   string        // zookeeper_mesos_path
	MesosDNSPort         int           // mesos_dns_port
	MastersRefreshNormal time.Duration // masters_refresh_interval_normal
	MastersRefreshFail   time.Duration // masters_refresh_interval_fail
	ExhibitorTimeout     time.Duration // exhibitor_timeout

	Interface  InterfaceConfig // interface
	HTTPListen string          // http_listen ("" disables)
	HTTPPprof  bool            // http_pprof: serve /debug/pprof/ on http_listen (off: profiles burn CPU and leak names)
	CtlSocket  string          // ctl_socket

	Watchdog WatchdogConfig // watchdog (Spartan-Go extension; tests shorten it)
	Limits   LimitsConfig   // limits (Spartan-Go extension; resource caps against hostile clients)
	Cache    CacheConfig    // cache
	Dnstap   DnstapConfig   // dnstap; both empty: off
}

// DnstapConfig is the "dnstap" object: a collector's unix socket or a file.
type DnstapConfig struct {
	Socket string // socket
	File   string // file
}

// InterfaceConfig is the "interface" object.
type InterfaceConfig struct {
	Manage bool   // manage
	Name   string // name
}

// WatchdogConfig is the "watchdog" object.
type WatchdogConfig struct {
	Interval time.Duration // interval, default 15s
	Grace    time.Duration // grace, default 60s: failing this long exits the process
}

// LimitsConfig is the "limits" object: caps that keep hostile clients from
// exhausting the process.
type LimitsConfig struct {
	TCPConnections int           // tcp_connections: concurrent client TCP connections, default 512
	TCPPipeline    int           // tcp_pipeline: queries in flight on one TCP connection, default 64
	TCPIdleTimeout time.Duration // tcp_idle_timeout: RFC 7766 idle timeout, default 10s
	TCPReadTimeout time.Duration // tcp_read_timeout: time to read one framed query once started, default 2s
	UDPPayloadMax  int           // udp_payload_max: largest UDP reply accepted from an upstream, default 65535
	TCPMessageMax  int           // tcp_message_max: largest TCP message accepted, default 65535
}

// Master sources accepted by master_source.
const (
	MasterSourceExhibitor    = "exhibitor"
	MasterSourceExhibitorURI = "exhibitor_uri"
	MasterSourceMasterList   = "master_list"
	MasterSourceZookeeper    = "zookeeper"
	MasterSourceNone         = "none"
)

var masterSources = []string{
	MasterSourceExhibitor, MasterSourceExhibitorURI, MasterSourceMasterList,
	MasterSourceZookeeper, MasterSourceNone,
}

// Where exhibitor_address is polled: http://HOST:ExhibitorPort + ExhibitorStatusPath
// (the masters watcher builds the URL; validation names it in errors).
const (
	ExhibitorPort       = "8181"
	ExhibitorStatusPath = "/exhibitor/v1/cluster/status"
)

// Defaults that other packages fall back on too: spartanctl's -socket, and
// the masters watchers when handed a Config that did not come from Load.
const (
	DefaultCtlSocket            = "/run/spartan/spartanctl.sock"
	DefaultMastersRefreshNormal = 120 * time.Second
	DefaultMastersRefreshFail   = 5 * time.Second
	DefaultExhibitorTimeout     = 30 * time.Second
)

// defaultBindIPs are the addresses Spartan listens on by default.
var defaultBindIPs = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}

// Default returns the built-in configuration. UpstreamResolvers is left
// empty: Load fills it from the host's resolv.conf when the file does not
// set it.
func Default() *Config {
	c := &Config{
		ForwardZones:         map[string][]netip.AddrPort{},
		UDPPort:              53,
		TCPPort:              53,
		UDPServerEnabled:     true,
		TCPServerEnabled:     true,
		HandlerLimit:         1024,
		UpstreamTimeout:      5 * time.Second,
		MasterSource:         MasterSourceNone,
		MasterListFile:       "/opt/mesosphere/etc/master_list",
		ZookeeperMesosPath:   "/mesos",
		MesosDNSPort:         61053,
		MastersRefreshNormal: DefaultMastersRefreshNormal,
		MastersRefreshFail:   DefaultMastersRefreshFail,
		ExhibitorTimeout:     DefaultExhibitorTimeout,
		Interface:            InterfaceConfig{Manage: true, Name: "spartan"},
		HTTPListen:           "127.0.0.1:62080",
		CtlSocket:            DefaultCtlSocket,
		Watchdog:             WatchdogConfig{Interval: 15 * time.Second, Grace: 60 * time.Second},
		Cache:                DefaultCache(),
		Limits: LimitsConfig{
			TCPConnections: 512,
			TCPPipeline:    64,
			TCPIdleTimeout: 10 * time.Second,
			TCPReadTimeout: 2 * time.Second,
			UDPPayloadMax:  65535,
			TCPMessageMax:  65535,
		},
	}
	for _, s := range defaultBindIPs {
		c.BindIPs = append(c.BindIPs, netip.MustParseAddr(s))
	}
	return c
}
