package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFullExample(t *testing.T) {
	got, err := LoadWith("testdata/full.json", noEnv, "")
	if err != nil {
		t.Fatalf("LoadWith: %v", err)
	}
	want := &Config{
		UpstreamResolvers: []netip.AddrPort{
			ap("192.0.2.53:53"), ap("192.0.2.54:5353"), ap("[2001:db8::53]:53"), ap("[2001:db8::54]:53"),
		},
		ForwardZones: map[string][]netip.AddrPort{
			"example.com.":      {ap("192.0.2.10:53"), ap("192.0.2.11:5300")},
			"corp.example.org.": {ap("[2001:db8::10]:53")},
		},
		BindIPs:              []netip.Addr{ip("198.51.100.1"), ip("198.51.100.2"), ip("198.51.100.3")},
		BindIPBlacklist:      []netip.Addr{ip("198.51.100.4")},
		UDPPort:              5353,
		TCPPort:              5354,
		UDPServerEnabled:     true,
		TCPServerEnabled:     false,
		HandlerLimit:         2048,
		UpstreamTimeout:      2 * time.Second,
		MasterSource:         "exhibitor",
		ExhibitorAddress:     "zk.example.com",
		ExhibitorURI:         "https://exhibitor.example.com:8181/exhibitor/v1/cluster/status",
		MasterListFile:       "/var/lib/spartan/master_list",
		ZookeeperServers:     []string{"10.0.0.1:2181", "zk-2.example.com:2181"},
		ZookeeperMesosPath:   "/dcos/mesos",
		MesosDNSPort:         8123,
		MastersRefreshNormal: 60 * time.Second,
		MastersRefreshFail:   time.Second,
		ExhibitorTimeout:     10 * time.Second,
		Interface:            InterfaceConfig{Manage: false, Name: "spartan0"},
		HTTPListen:           "127.0.0.1:9090",
		CtlSocket:            "/tmp/spartan/ctl.sock",
		Watchdog:             WatchdogConfig{Interval: 5 * time.Second, Grace: 30 * time.Second},
		Limits: LimitsConfig{
			TCPConnections: 100,
			TCPPipeline:    8,
			TCPIdleTimeout: 20 * time.Second,
			TCPReadTimeout: 500 * time.Millisecond,
			UDPPayloadMax:  4096,
			TCPMessageMax:  16384,
		},
		Cache: CacheConfig{Enabled: true, MaxEntries: 5000, MaxTTL: 10 * time.Minute, NegativeMaxTTL: 5 * time.Minute,
			StaleMaxAge: time.Hour, StaleAnswerTTL: 10 * time.Second, ClientTimeout: 500 * time.Millisecond,
			StaleRecheck: 5 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("full config mismatch\n got: %+v\nwant: %+v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{}`), noEnv, "")
	if err != nil {
		t.Fatalf("Parse({}): %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Parse({}) = %+v, want Default() %+v", c, Default())
	}
	// The spec's table, value by value, so a drift in Default() is caught.
	checks := []struct {
		key       string
		got, want any
	}{
		{"upstream_resolvers", len(c.UpstreamResolvers), 0},
		{"forward_zones", len(c.ForwardZones), 0},
		{"bind_ips", c.BindIPs, []netip.Addr{ip("198.51.100.1"), ip("198.51.100.2"), ip("198.51.100.3")}},
		{"bind_ip_blacklist", len(c.BindIPBlacklist), 0},
		{"udp_port", c.UDPPort, 53},
		{"tcp_port", c.TCPPort, 53},
		{"udp_server_enabled", c.UDPServerEnabled, true},
		{"tcp_server_enabled", c.TCPServerEnabled, true},
		{"handler_limit", c.HandlerLimit, 1024},
		{"upstream_timeout", c.UpstreamTimeout, 5 * time.Second},
		{"master_source", c.MasterSource, "none"},
		{"exhibitor_address", c.ExhibitorAddress, ""},
		{"exhibitor_uri", c.ExhibitorURI, ""},
		{"master_list_file", c.MasterListFile, "/opt/mesosphere/etc/master_list"},
		{"zookeeper_servers", len(c.ZookeeperServers), 0},
		{"zookeeper_mesos_path", c.ZookeeperMesosPath, "/mesos"},
		{"mesos_dns_port", c.MesosDNSPort, 61053},
		{"masters_refresh_interval_normal", c.MastersRefreshNormal, 120 * time.Second},
		{"masters_refresh_interval_fail", c.MastersRefreshFail, 5 * time.Second},
		{"exhibitor_timeout", c.ExhibitorTimeout, 30 * time.Second},
		{"interface", c.Interface, InterfaceConfig{Manage: true, Name: "spartan"}},
		{"http_listen", c.HTTPListen, "127.0.0.1:62080"},
		{"ctl_socket", c.CtlSocket, "/run/spartan/spartanctl.sock"},
		{"watchdog", c.Watchdog, WatchdogConfig{Interval: 15 * time.Second, Grace: 60 * time.Second}},
		{"limits", c.Limits, LimitsConfig{TCPConnections: 512, TCPPipeline: 64, TCPIdleTimeout: 10 * time.Second,
			TCPReadTimeout: 2 * time.Second, UDPPayloadMax: 65535, TCPMessageMax: 65535}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %v, want %v", ch.key, ch.got, ch.want)
		}
	}
}

func TestPartialNestedObjectsKeepDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"interface": {"name": "dns0"}, "watchdog": {"interval": "100ms"},
		"limits": {"tcp_pipeline": 1}}`), noEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != (InterfaceConfig{Manage: true, Name: "dns0"}) {
		t.Errorf("interface = %+v", c.Interface)
	}
	if c.Watchdog != (WatchdogConfig{Interval: 100 * time.Millisecond, Grace: 60 * time.Second}) {
		t.Errorf("watchdog = %+v", c.Watchdog)
	}
	want := Default().Limits
	want.TCPPipeline = 1
	if c.Limits != want {
		t.Errorf("limits = %+v, want %+v", c.Limits, want)
	}
}

func TestLoadDefaultPath(t *testing.T) {
	resolv := writeFile(t, "resolv.conf", "nameserver 192.0.2.1\n")

	defaultPath := filepath.Join(t.TempDir(), "absent.json")
	c, err := loadFrom("", defaultPath, noEnv, resolv)
	if err != nil {
		t.Fatalf("no default file: %v", err)
	}
	if c.UDPPort != 53 || !reflect.DeepEqual(c.UpstreamResolvers, []netip.AddrPort{ap("192.0.2.1:53")}) {
		t.Errorf("built-in defaults not used: %+v", c)
	}

	defaultPath = writeFile(t, "spartan.json", `{"udp_port": 1053}`)
	c, err = loadFrom("", defaultPath, noEnv, resolv)
	if err != nil {
		t.Fatalf("default file: %v", err)
	}
	if c.UDPPort != 1053 {
		t.Errorf("default file not read: udp_port = %d", c.UDPPort)
	}

	// A named file that is missing is an error, never the defaults.
	if _, err := LoadWith(filepath.Join(t.TempDir(), "nope.json"), noEnv, resolv); err == nil {
		t.Error("missing -config file: no error")
	}
	// Errors from a file name the file and still unwrap to KeyError.
	bad := writeFile(t, "bad.json", `{"udp_port": 0}`)
	_, err = LoadWith(bad, noEnv, resolv)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "udp_port" || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: err = %v", err)
	}
}

func TestForwardZonesLegacyEqualsMap(t *testing.T) {
	legacy, err := LoadWith("testdata/legacy.json", noEnv, "")
	if err != nil {
		t.Fatalf("legacy: %v", err)
	}
	mapped, err := LoadWith("testdata/map.json", noEnv, "")
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	want := map[string][]netip.AddrPort{
		"example.com.":      {ap("192.0.2.10:53"), ap("192.0.2.11:5300")},
		"corp.example.org.": {ap("[2001:db8::10]:53")},
	}
	if !reflect.DeepEqual(legacy.ForwardZones, want) {
		t.Errorf("legacy forward_zones = %v, want %v", legacy.ForwardZones, want)
	}
	if !reflect.DeepEqual(legacy, mapped) {
		t.Errorf("legacy and map forms differ:\nlegacy: %+v\n   map: %+v", legacy, mapped)
	}
}

func TestAddressForms(t *testing.T) {
	tests := []struct {
		in   string
		want netip.AddrPort
	}{
		{`"192.0.2.1"`, ap("192.0.2.1:53")},
		{`"192.0.2.1:5353"`, ap("192.0.2.1:5353")},
		{`"::1"`, ap("[::1]:53")},
		{`"[::1]"`, ap("[::1]:53")},
		{`"[::1]:5353"`, ap("[::1]:5353")},
		{`"2001:db8::1"`, ap("[2001:db8::1]:53")},
		{`"::ffff:192.0.2.7"`, ap("192.0.2.7:53")},
		{`["192.0.2.1", 5300]`, ap("192.0.2.1:5300")},
		{`["2001:db8::1", 53]`, ap("[2001:db8::1]:53")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse([]byte(`{"upstream_resolvers": [`+tt.in+`]}`), noEnv, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(c.UpstreamResolvers) != 1 || c.UpstreamResolvers[0] != tt.want {
				t.Errorf("got %v, want [%v]", c.UpstreamResolvers, tt.want)
			}
		})
	}
}

func TestZoneNormalisation(t *testing.T) {
	c, err := Parse([]byte(`{"forward_zones": {"Example.COM": ["192.0.2.1"], "a.B.c.": ["192.0.2.2"], ".": ["192.0.2.3"]}}`), noEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]netip.AddrPort{
		"example.com.": {ap("192.0.2.1:53")},
		"a.b.c.":       {ap("192.0.2.2:53")},
		".":            {ap("192.0.2.3:53")},
	}
	if !reflect.DeepEqual(c.ForwardZones, want) {
		t.Errorf("zones = %v, want %v", c.ForwardZones, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name               string
		file               string
		env                map[string]string
		wantSource         string
		wantAddr, wantURI  string
		wantErrKey, errSub string
	}{
		{name: "no env keeps file", file: `{"master_source": "master_list"}`, wantSource: "master_list"},
		{name: "no env no file", file: `{}`, wantSource: "none"},
		{name: "env source beats file", file: `{"master_source": "none", "zookeeper_servers": ["zk:2181"]}`,
			env: map[string]string{"MASTER_SOURCE": "zookeeper"}, wantSource: "zookeeper"},
		{name: "env exhibitor with env address", file: `{}`,
			env:        map[string]string{"MASTER_SOURCE": "exhibitor", "EXHIBITOR_ADDRESS": "10.0.0.9"},
			wantSource: "exhibitor", wantAddr: "10.0.0.9"},
		{name: "env address beats file", file: `{"master_source": "exhibitor", "exhibitor_address": "a.example"}`,
			env: map[string]string{"EXHIBITOR_ADDRESS": "b.example"}, wantSource: "exhibitor", wantAddr: "b.example"},
		{name: "env uri", file: `{"master_source": "exhibitor_uri", "exhibitor_uri": "http://a/x"}`,
			env: map[string]string{"EXHIBITOR_URI": "https://b:8181/exhibitor/v1/cluster/status"}, wantSource: "exhibitor_uri",
			wantURI: "https://b:8181/exhibitor/v1/cluster/status"},
		{name: "empty env is unset", file: `{"master_source": "master_list"}`,
			env: map[string]string{"MASTER_SOURCE": ""}, wantSource: "master_list"},
		{name: "bad env source", file: `{}`, env: map[string]string{"MASTER_SOURCE": "consul"},
			wantErrKey: "MASTER_SOURCE", errSub: "consul"},
		{name: "bad env address", file: `{}`, env: map[string]string{"EXHIBITOR_ADDRESS": "http://x:8181/"},
			wantErrKey: "EXHIBITOR_ADDRESS"},
		{name: "bad env uri", file: `{}`, env: map[string]string{"EXHIBITOR_URI": "ftp://x/"},
			wantErrKey: "EXHIBITOR_URI"},
		{name: "env exhibitor without address", file: `{}`, env: map[string]string{"MASTER_SOURCE": "exhibitor"},
			wantErrKey: "exhibitor_address"},
		{name: "env zookeeper without servers", file: `{}`, env: map[string]string{"MASTER_SOURCE": "zookeeper"},
			wantErrKey: "zookeeper_servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), envOf(tt.env), "")
			if tt.wantErrKey != "" {
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Key != tt.wantErrKey {
					t.Fatalf("err = %v, want KeyError %q", err, tt.wantErrKey)
				}
				if tt.errSub != "" && !strings.Contains(err.Error(), tt.errSub) {
					t.Errorf("err %q does not mention %q", err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MasterSource != tt.wantSource || c.ExhibitorAddress != tt.wantAddr || c.ExhibitorURI != tt.wantURI {
				t.Errorf("got source=%q addr=%q uri=%q, want %q %q %q",
					c.MasterSource, c.ExhibitorAddress, c.ExhibitorURI, tt.wantSource, tt.wantAddr, tt.wantURI)
			}
		})
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	tests := []struct {
		name, file, resolv string
		want               []netip.AddrPort
	}{
		{
			name: "comments, ipv6, other directives, own bind ip excluded",
			file: `{}`,
			resolv: "# generated\n; also a comment\nsearch example.com\noptions timeout:1\n" +
				"nameserver 198.51.100.1\n" + // a default bind IP: Spartan itself
				"nameserver 192.0.2.1 # trailing comment\n" +
				"  nameserver\t2001:db8::1\n" +
				"#nameserver 192.0.2.99\n" +
				"nameserver not-an-ip\n" +
				"nameserver 192.0.2.1\n" + // duplicate
				"nameserver 0.0.0.0\n",
			want: []netip.AddrPort{ap("192.0.2.1:53"), ap("[2001:db8::1]:53")},
		},
		{
			name:   "custom bind ips are excluded",
			file:   `{"bind_ips": ["127.0.0.1"], "udp_port": 10053, "tcp_port": 10053}`,
			resolv: "nameserver 127.0.0.1\nnameserver 192.0.2.2\n",
			want:   []netip.AddrPort{ap("192.0.2.2:53")},
		},
		{
			name:   "blacklisted bind ip is not Spartan, so it is kept",
			file:   `{"bind_ip_blacklist": ["198.51.100.2"]}`,
			resolv: "nameserver 198.51.100.2\nnameserver 198.51.100.3\n",
			want:   []netip.AddrPort{ap("198.51.100.2:53")},
		},
		{
			name:   "only spartan listed leaves none",
			file:   `{}`,
			resolv: "nameserver 198.51.100.1\nnameserver 198.51.100.2\n",
			want:   nil,
		},
		{
			name:   "explicit key wins over resolv.conf",
			file:   `{"upstream_resolvers": ["192.0.2.9:5353"]}`,
			resolv: "nameserver 192.0.2.1\n",
			want:   []netip.AddrPort{ap("192.0.2.9:5353")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resolv := writeFile(t, "resolv.conf", tt.resolv)
			c, err := Parse([]byte(tt.file), noEnv, resolv)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.UpstreamResolvers, tt.want) {
				t.Errorf("upstreams = %v, want %v", c.UpstreamResolvers, tt.want)
			}
		})
	}

	t.Run("missing resolv.conf leaves none", func(t *testing.T) {
		c, err := Parse([]byte(`{}`), noEnv, filepath.Join(t.TempDir(), "absent"))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.UpstreamResolvers) != 0 {
			t.Errorf("upstreams = %v", c.UpstreamResolvers)
		}
	})
	t.Run("unreadable resolv.conf is an error", func(t *testing.T) {
		// A directory cannot be read as a file, even by root.
		_, err := Parse([]byte(`{}`), noEnv, t.TempDir())
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "upstream_resolvers" {
			t.Errorf("err = %v, want KeyError upstream_resolvers", err)
		}
	})
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, json, key string
		errSub          string // optional: part of the message
	}{
		// unknown keys
		{"unknown top-level key", `{"upstream_resolver": ["192.0.2.1"]}`, "upstream_resolver", "unknown key"},
		{"unknown interface key", `{"interface": {"mange": true}}`, "interface.mange", "unknown key"},
		{"unknown watchdog key", `{"watchdog": {"timeout": "1s"}}`, "watchdog.timeout", "unknown key"},
		{"unknown limits key", `{"limits": {"tcp_conns": 5}}`, "limits.tcp_conns", "unknown key"},
		{"duplicate key", `{"udp_port": 53, "udp_port": 54}`, "udp_port", "more than once"},
		{"duplicate nested key", `{"interface": {"name": "a", "name": "b"}}`, "interface.name", "more than once"},

		// wrong types, one per kind of key
		{"int as string", `{"udp_port": "53"}`, "udp_port", "integer"},
		{"int as float", `{"tcp_port": 53.5}`, "tcp_port", "integer"},
		{"int as null", `{"handler_limit": null}`, "handler_limit", "null"},
		{"bool as string", `{"udp_server_enabled": "true"}`, "udp_server_enabled", "true or false"},
		{"bool as number", `{"tcp_server_enabled": 1}`, "tcp_server_enabled", "true or false"},
		{"duration as number", `{"upstream_timeout": 5000}`, "upstream_timeout", `"5s"`},
		{"string as number", `{"master_source": 1}`, "master_source", "string"},
		{"list as string", `{"bind_ips": "198.51.100.1"}`, "bind_ips", "array"},
		{"list entry as number", `{"bind_ip_blacklist": [1]}`, "bind_ip_blacklist", "entry 0"},
		{"list entry as number, message", `{"bind_ips": [1]}`, "bind_ips", "entry 0: expected an IP string, got a number 1"},
		{"bind IP listed twice", `{"bind_ips": ["198.51.100.1", "198.51.100.1"]}`, "bind_ips", "entry 1: 198.51.100.1 listed twice"},
		{"upstream listed twice", `{"upstream_resolvers": ["192.0.2.1", "192.0.2.1:53"]}`, "upstream_resolvers", "entry 1: 192.0.2.1:53 listed twice"},
		{"zone upstream entry as number", `{"forward_zones": {"a.": ["192.0.2.1", 5]}}`, `forward_zones["a."]`, `entry 1: expected "ip[:port]", got a number 5`},
		{"upstreams as object", `{"upstream_resolvers": {"a": 1}}`, "upstream_resolvers", "array"},
		{"zones as string", `{"forward_zones": "example.com"}`, "forward_zones", "object"},
		{"object as bool", `{"interface": true}`, "interface", "object"},
		{"nested bool wrong", `{"interface": {"manage": "yes"}}`, "interface.manage", "true or false"},
		{"nested string wrong", `{"interface": {"name": 5}}`, "interface.name", "string"},
		{"nested duration wrong", `{"watchdog": {"interval": 15}}`, "watchdog.interval", "duration"},
		{"nested int wrong", `{"limits": {"tcp_pipeline": "64"}}`, "limits.tcp_pipeline", "integer"},
		{"zk servers as string", `{"zookeeper_servers": "zk:2181"}`, "zookeeper_servers", "array"},

		// ranges
		{"udp port 0", `{"udp_port": 0}`, "udp_port", "out of range"},
		{"tcp port 70000", `{"tcp_port": 70000}`, "tcp_port", "out of range"},
		{"mesos dns port 0", `{"mesos_dns_port": 0}`, "mesos_dns_port", "out of range"},
		{"negative port", `{"udp_port": -53}`, "udp_port", "out of range"},
		{"handler limit 0", `{"handler_limit": 0}`, "handler_limit", "out of range"},
		{"tcp connections 0", `{"limits": {"tcp_connections": 0}}`, "limits.tcp_connections", "out of range"},
		{"tcp pipeline 0", `{"limits": {"tcp_pipeline": 0}}`, "limits.tcp_pipeline", "out of range"},
		{"udp payload 511", `{"limits": {"udp_payload_max": 511}}`, "limits.udp_payload_max", "out of range"},
		{"tcp message 65536", `{"limits": {"tcp_message_max": 65536}}`, "limits.tcp_message_max", "out of range"},

		// addresses
		{"bad bind ip", `{"bind_ips": ["198.51.100.300"]}`, "bind_ips", "not an IP"},
		{"bind ip with port", `{"bind_ips": ["198.51.100.1:53"]}`, "bind_ips", "not an IP"},
		{"unspecified bind ip", `{"bind_ips": ["0.0.0.0"]}`, "bind_ips", "unicast"},
		{"duplicate bind ip", `{"bind_ips": ["198.51.100.1", "198.51.100.1"]}`, "bind_ips", "twice"},
		{"bad upstream ip", `{"upstream_resolvers": ["192.0.2"]}`, "upstream_resolvers", "192.0.2"},
		{"upstream port 0", `{"upstream_resolvers": ["192.0.2.1:0"]}`, "upstream_resolvers", "port"},
		{"upstream port 70000", `{"upstream_resolvers": ["192.0.2.1:70000"]}`, "upstream_resolvers", "70000"},
		{"upstream hostname", `{"upstream_resolvers": ["dns.example.com"]}`, "upstream_resolvers", "not an IP"},
		{"upstream multicast", `{"upstream_resolvers": ["224.0.0.251"]}`, "upstream_resolvers", "unicast"},
		{"empty upstream list", `{"upstream_resolvers": []}`, "upstream_resolvers", "empty"},
		{"upstream is spartan itself", `{"upstream_resolvers": ["198.51.100.1"]}`, "upstream_resolvers", "loop"},
		{"bad zk server", `{"zookeeper_servers": ["zk1"]}`, "zookeeper_servers", "host:port"},
		{"zk server port 0", `{"zookeeper_servers": ["zk1:0"]}`, "zookeeper_servers", "port"},
		{"bad http_listen", `{"http_listen": "localhost:80"}`, "http_listen", "ip:port"},
		{"http_listen without port", `{"http_listen": "127.0.0.1"}`, "http_listen", "ip:port"},

		// forward_zones
		{"empty zone list", `{"forward_zones": {"example.com": []}}`, `forward_zones["example.com"]`, "no upstreams"},
		{"zone upstreams not a list", `{"forward_zones": {"example.com": "192.0.2.1"}}`, `forward_zones["example.com"]`, "array"},
		{"bad zone upstream", `{"forward_zones": {"example.com": ["192.0.2.1:99999"]}}`, `forward_zones["example.com"]`, "99999"},
		{"empty zone name", `{"forward_zones": {"": ["192.0.2.1"]}}`, `forward_zones[""]`, "empty"},
		{"empty label", `{"forward_zones": {"a..b": ["192.0.2.1"]}}`, `forward_zones["a..b"]`, "empty label"},
		{"zone twice", `{"forward_zones": {"example.com": ["192.0.2.1"], "EXAMPLE.com.": ["192.0.2.2"]}}`,
			`forward_zones["example.com"]`, "also given"},
		{"zone upstream is spartan", `{"forward_zones": {"example.com": ["198.51.100.2:53"]}}`, `forward_zones["example.com"]`, "loop"},
		{"legacy empty zone list", `{"forward_zones": [["example.com", []]]}`, `forward_zones["example.com"]`, "no upstreams"},
		{"legacy entry not a pair", `{"forward_zones": [["example.com"]]}`, `forward_zones[0]`, "legacy"},
		{"legacy zone not a string", `{"forward_zones": [[1, [["192.0.2.1", 53]]]]}`, `forward_zones[0]`, "zone"},
		{"legacy port 0", `{"forward_zones": [["example.com", [["192.0.2.1", 0]]]]}`, `forward_zones["example.com"]`, "port"},
		{"legacy port as string", `{"forward_zones": [["example.com", [["192.0.2.1", "53"]]]]}`, `forward_zones["example.com"]`, "integer"},
		{"legacy bad ip", `{"forward_zones": [["example.com", [["192.0.2.x", 53]]]]}`, `forward_zones["example.com"]`, "not an IP"},
		{"legacy triple", `{"forward_zones": [["example.com", [["192.0.2.1", 53, 1]]]]}`, `forward_zones["example.com"]`, "elements"},

		// durations
		{"bad duration", `{"upstream_timeout": "5 seconds"}`, "upstream_timeout", "invalid duration"},
		{"duration without unit", `{"exhibitor_timeout": "30"}`, "exhibitor_timeout", "invalid duration"},
		{"zero duration", `{"masters_refresh_interval_normal": "0s"}`, "masters_refresh_interval_normal", "greater than zero"},
		{"negative duration", `{"masters_refresh_interval_fail": "-5s"}`, "masters_refresh_interval_fail", "greater than zero"},
		{"negative nested duration", `{"limits": {"tcp_idle_timeout": "-1s"}}`, "limits.tcp_idle_timeout", "greater than zero"},
		{"zero read timeout", `{"limits": {"tcp_read_timeout": "0ms"}}`, "limits.tcp_read_timeout", "greater than zero"},
		{"grace shorter than interval", `{"watchdog": {"interval": "10s", "grace": "5s"}}`, "watchdog.grace", "shorter"},
		{"zero watchdog grace", `{"watchdog": {"grace": "0s"}}`, "watchdog.grace", "greater than zero"},

		// master source and its companions
		{"bad master_source", `{"master_source": "consul"}`, "master_source", "not one of"},
		{"master_source wrong case", `{"master_source": "Exhibitor"}`, "master_source", "not one of"},
		{"missing exhibitor_address", `{"master_source": "exhibitor"}`, "exhibitor_address", "not set"},
		{"missing exhibitor_uri", `{"master_source": "exhibitor_uri"}`, "exhibitor_uri", "not set"},
		{"missing zookeeper_servers", `{"master_source": "zookeeper"}`, "zookeeper_servers", "empty"},
		{"exhibitor address with scheme", `{"exhibitor_address": "http://10.0.0.1:8181"}`, "exhibitor_address", "not a host"},
		{"empty exhibitor address", `{"exhibitor_address": ""}`, "exhibitor_address", "empty"},
		{"bad uri scheme", `{"exhibitor_uri": "ftp://10.0.0.1/status"}`, "exhibitor_uri", "scheme"},
		{"uri without host", `{"exhibitor_uri": "http:///exhibitor"}`, "exhibitor_uri", "no host"},
		{"uri unparsable", `{"exhibitor_uri": "http://[::1/x"}`, "exhibitor_uri", "invalid URL"},
		{"uri bad port", `{"exhibitor_uri": "http://x:0/"}`, "exhibitor_uri", "port"},

		// bind ips and listeners
		{"blacklist removes all", `{"bind_ips": ["198.51.100.1"], "bind_ip_blacklist": ["198.51.100.1"]}`, "bind_ips", "blacklist"},
		{"empty bind ips", `{"bind_ips": []}`, "bind_ips", "no bind IP"},
		{"no listeners", `{"udp_server_enabled": false, "tcp_server_enabled": false}`, "udp_server_enabled", "nothing"},

		// interface
		{"interface name too long", `{"interface": {"name": "abcdefghijklmnop"}}`, "interface.name", "1..15"},
		{"interface name empty", `{"interface": {"name": ""}}`, "interface.name", "1..15"},
		{"interface name slash", `{"interface": {"name": "a/b"}}`, "interface.name", "invalid character"},
		{"interface name space", `{"interface": {"name": "a b"}}`, "interface.name", "invalid character"},
		{"interface name colon", `{"interface": {"name": "eth0:1"}}`, "interface.name", "invalid character"},
		{"interface name dot", `{"interface": {"name": "."}}`, "interface.name", "not a valid"},

		// paths
		{"empty ctl_socket", `{"ctl_socket": ""}`, "ctl_socket", "empty"},
		{"ctl_socket too long", `{"ctl_socket": "/` + strings.Repeat("s", 120) + `"}`, "ctl_socket", "longer"},
		{"empty master_list_file", `{"master_list_file": ""}`, "master_list_file", "empty"},
		{"relative zk path", `{"zookeeper_mesos_path": "mesos"}`, "zookeeper_mesos_path", "start with /"},
		{"zk path trailing slash", `{"zookeeper_mesos_path": "/mesos/"}`, "zookeeper_mesos_path", "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.json), noEnv, "")
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("err %v (%T) is not a KeyError", err, err)
			}
			if ke.Key != tt.key {
				t.Errorf("KeyError.Key = %q, want %q (err: %v)", ke.Key, tt.key, err)
			}
			if tt.errSub != "" && !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("err %q does not mention %q", err, tt.errSub)
			}
			if !strings.HasPrefix(ke.Error(), "config key ") {
				t.Errorf("Error() = %q, want the key first", ke.Error())
			}
		})
	}
}

func TestSeveralBadKeysAreAllReported(t *testing.T) {
	_, err := Parse([]byte(`{"udp_port": 0, "bogus": 1, "tcp_port": "x"}`), noEnv, "")
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("err = %v", err)
	}
	for _, k := range []string{`"bogus"`, `"tcp_port"`, `"udp_port"`} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("err %q does not name %s", err, k)
		}
	}
}

func TestInvalidDocument(t *testing.T) {
	tests := []struct {
		name, doc, errSub string
	}{
		{"syntax error", "{\n  \"udp_port\": 53,\n  \"tcp_port\": 53,,\n}", "line 3"},
		{"truncated", `{"udp_port": 53`, "not valid JSON"},
		{"trailing garbage", `{} {}`, "not valid JSON"},
		{"empty file", "  \n", "empty"},
		{"array document", `[1, 2]`, "not a JSON object"},
		{"null document", `null`, "not a JSON object"},
		{"string document", `"x"`, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), noEnv, "")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("err %q does not mention %q", err, tt.errSub)
			}
		})
	}
}

// TestReleaseConfigs keeps the shipped configs loadable.
func TestReleaseConfigs(t *testing.T) {
	resolv := writeFile(t, "resolv.conf", "nameserver 127.0.0.1\nnameserver 192.0.2.1\n")
	t.Run("spartan-dev.json", func(t *testing.T) {
		c, err := LoadWith("../../rel/spartan-dev.json", noEnv, resolv)
		if err != nil {
			t.Fatal(err)
		}
		if c.Interface.Manage || c.UDPPort != 10053 || c.TCPPort != 10053 || c.MasterSource != "none" ||
			!reflect.DeepEqual(c.BindIPs, []netip.Addr{ip("127.0.0.1")}) {
			t.Errorf("dev config: %+v", c)
		}
		// 127.0.0.1 is the dev bind IP, so it is not an upstream.
		if !reflect.DeepEqual(c.UpstreamResolvers, []netip.AddrPort{ap("192.0.2.1:53")}) {
			t.Errorf("dev upstreams = %v", c.UpstreamResolvers)
		}
	})
	t.Run("spartan.json", func(t *testing.T) {
		c, err := LoadWith("../../rel/spartan.json", noEnv, "")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("production config differs from Default():\n got %+v\nwant %+v", c, Default())
		}
	})
}

func TestKeyErrorMessage(t *testing.T) {
	tests := []struct {
		err  *KeyError
		want string
	}{
		{&KeyError{Key: "forward_zones", Err: errors.New("bad")}, `config key "forward_zones": bad`},
		{&KeyError{Key: `forward_zones["example.com"]`, Err: errors.New("bad")}, `config key forward_zones["example.com"]: bad`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, tt.err.Err) {
			t.Error("KeyError does not unwrap to its Err")
		}
	}
}
