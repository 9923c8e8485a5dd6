package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultConfigPath is read when no -config is given and it exists.
	DefaultConfigPath = "/etc/spartan/spartan.json"
	// DefaultResolvConfPath supplies upstream_resolvers when the file does
	// not set them.
	DefaultResolvConfPath = "/etc/resolv.conf"
)

// defaultConfigPath is DefaultConfigPath; tests point it elsewhere.
var defaultConfigPath = DefaultConfigPath

// Environment variables that override the file, as in the original.
const (
	EnvMasterSource     = "MASTER_SOURCE"
	EnvExhibitorAddress = "EXHIBITOR_ADDRESS"
	EnvExhibitorURI     = "EXHIBITOR_URI"
)

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

// KeyError is a configuration error attributable to one key: a top-level
// key ("udp_port"), a nested one ("interface.name",
// `forward_zones["example.com"]`) or an overriding environment variable
// ("MASTER_SOURCE"). cmd/spartan exits 2 on it.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string {
	if strings.Contains(e.Key, `"`) { // forward_zones["x"]: quoting again would only add backslashes
		return fmt.Sprintf("config key %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("config key %q: %v", e.Key, e.Err)
}
func (e *KeyError) Unwrap() error { return e.Err }

func keyErr(key, format string, args ...any) *KeyError {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Load reads the configuration at path with the process environment and
// the host's resolv.conf. path == "": DefaultConfigPath if it exists, else
// the built-in defaults.
func Load(path string) (*Config, error) {
	return LoadWith(path, os.Getenv, DefaultResolvConfPath)
}

// LoadWith is Load with the environment and the resolv.conf path injected.
func LoadWith(path string, getenv func(string) string, resolvConf string) (*Config, error) {
	data, name, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data, getenv, resolvConf)
	if err != nil {
		if name == "" {
			return nil, fmt.Errorf("built-in config: %w", err)
		}
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// readConfigFile returns the file's contents and its name, or "{}" and ""
// when path is empty and the default file does not exist.
func readConfigFile(path string) ([]byte, string, error) {
	if path == "" {
		data, err := os.ReadFile(defaultConfigPath)
		if errors.Is(err, fs.ErrNotExist) {
			return []byte("{}"), "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read config: %w", err)
		}
		return data, defaultConfigPath, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// An explicitly named file that is missing is an operator error,
		// never a reason to fall back to defaults.
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	return data, path, nil
}

// Parse parses a configuration document. getenv supplies the overriding
// environment (nil: none). resolvConf is the resolv.conf whose nameservers
// become upstream_resolvers when the document does not set them ("": none).
// All key errors found are returned joined; errors.As finds the first.
func Parse(data []byte, getenv func(string) string, resolvConf string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if err := checkSyntax(data); err != nil {
		return nil, err
	}
	if err := checkDuplicateKeys(data); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("config is not a JSON object: %w", err)
	}
	if top == nil { // the document was "null"
		return nil, errors.New("config is not a JSON object: got null")
	}

	p := &parser{cfg: Default(), set: map[string]bool{}}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		fn, ok := topLevel[k]
		if !ok {
			errs = append(errs, &KeyError{Key: k, Err: errors.New(unknownKeyMsg(k, topLevelNames()))})
			continue
		}
		v, err := decodeValue(top[k])
		if err != nil {
			errs = append(errs, &KeyError{Key: k, Err: err})
			continue
		}
		if err := fn(p, k, v); err != nil {
			errs = append(errs, asKeyError(k, err))
			continue
		}
		p.set[k] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := p.applyEnv(getenv); err != nil {
		return nil, err
	}
	if err := p.finish(resolvConf); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

func asKeyError(key string, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return err
	}
	return &KeyError{Key: key, Err: err}
}

// checkSyntax reports invalid JSON with its line and column.
func checkSyntax(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("config is empty (an empty configuration is {})")
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Errorf("config is not valid JSON: line %d, column %d (byte %d): %w", line, col, se.Offset, err)
	}
	if err != nil {
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("config is not a JSON object: got %s", jsonType(v))
	}
	return nil
}

func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

// checkDuplicateKeys walks the token stream: encoding/json silently keeps
// the last of two equal keys, which would hide an operator's mistake.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkDup(dec, "")
}

func walkDup(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("config is not valid JSON: %w", err)
			}
			k, _ := kt.(string)
			child := childPath(path, k)
			if seen[k] {
				return &KeyError{Key: child, Err: errors.New("key appears more than once")}
			}
			seen[k] = true
			if err := walkDup(dec, child); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walkDup(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("config is not valid JSON: %w", err)
	}
	return nil
}

func childPath(parent, k string) string {
	switch {
	case parent == "":
		return k
	case parent == "forward_zones":
		return zoneKey(k)
	default:
		return parent + "." + k
	}
}

func zoneKey(zone string) string { return fmt.Sprintf("forward_zones[%q]", zone) }

// decodeValue decodes one raw value keeping numbers exact, so that 53.5 or
// 1e3 can be told apart from an integer.
func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after value")
	}
	return v, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// describe renders a value for an error message: short, and quoted when it
// is a string so that whitespace and emptiness are visible.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%s %q", jsonType(v), x)
	case json.Number:
		return fmt.Sprintf("%s %s", jsonType(v), x.String())
	case bool:
		return fmt.Sprintf("%s %t", jsonType(v), x)
	}
	return jsonType(v)
}

func unknownKeyMsg(k string, known []string) string {
	return fmt.Sprintf("unknown key %q (known keys: %s)", k, strings.Join(known, ", "))
}

type parser struct {
	cfg *Config
	set map[string]bool // top-level keys the document (or the environment) set
}

type keyFunc func(p *parser, key string, v any) error

// topLevel holds one typed parser per top-level key, so that every error
// names its key.
var topLevel = map[string]keyFunc{
	"upstream_resolvers": func(p *parser, k string, v any) error {
		ups, err := parseUpstreamList(v, true)
		if err != nil {
			return err
		}
		p.cfg.UpstreamResolvers = ups
		return nil
	},
	"forward_zones": func(p *parser, k string, v any) error {
		z, err := parseForwardZones(v)
		if err != nil {
			return err
		}
		p.cfg.ForwardZones = z
		return nil
	},
	"bind_ips": func(p *parser, k string, v any) error {
		ips, err := parseIPList(v)
		if err != nil {
			return err
		}
		p.cfg.BindIPs = ips
		return nil
	},
	"bind_ip_blacklist": func(p *parser, k string, v any) error {
		ips, err := parseIPList(v)
		if err != nil {
			return err
		}
		p.cfg.BindIPBlacklist = ips
		return nil
	},
	"udp_port":           intKey(func(c *Config) *int { return &c.UDPPort }, 1, 65535),
	"tcp_port":           intKey(func(c *Config) *int { return &c.TCPPort }, 1, 65535),
	"mesos_dns_port":     intKey(func(c *Config) *int { return &c.MesosDNSPort }, 1, 65535),
	"handler_limit":      intKey(func(c *Config) *int { return &c.HandlerLimit }, 1, 1<<31-1),
	"udp_server_enabled": boolKey(func(c *Config) *bool { return &c.UDPServerEnabled }),
	"tcp_server_enabled": boolKey(func(c *Config) *bool { return &c.TCPServerEnabled }),
	"upstream_timeout":   durationKey(func(c *Config) *time.Duration { return &c.UpstreamTimeout }),
	"masters_refresh_interval_normal": durationKey(func(c *Config) *time.Duration {
		return &c.MastersRefreshNormal
	}),
	"masters_refresh_interval_fail": durationKey(func(c *Config) *time.Duration {
		return &c.MastersRefreshFail
	}),
	"exhibitor_timeout": durationKey(func(c *Config) *time.Duration { return &c.ExhibitorTimeout }),
	"master_source":     stringKey(func(c *Config) *string { return &c.MasterSource }, validMasterSource),
	"exhibitor_address": stringKey(func(c *Config) *string { return &c.ExhibitorAddress },
		validExhibitorAddress),
	"exhibitor_uri":        stringKey(func(c *Config) *string { return &c.ExhibitorURI }, validExhibitorURI),
	"master_list_file":     stringKey(func(c *Config) *string { return &c.MasterListFile }, validPath),
	"zookeeper_mesos_path": stringKey(func(c *Config) *string { return &c.ZookeeperMesosPath }, validZKPath),
	"http_listen":          stringKey(func(c *Config) *string { return &c.HTTPListen }, validHTTPListen),
	"ctl_socket":           stringKey(func(c *Config) *string { return &c.CtlSocket }, validSocketPath),
	"zookeeper_servers": func(p *parser, k string, v any) error {
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf(`expected an array of "host:port" strings, got %s`, describe(v))
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf(`entry %d: expected a "host:port" string, got %s`, i, describe(e))
			}
			if err := validHostPort(s); err != nil {
				return fmt.Errorf("entry %d %q: %w", i, s, err)
			}
			if slices.Contains(out, s) {
				return fmt.Errorf("entry %d %q: listed twice", i, s)
			}
			out = append(out, s)
		}
		p.cfg.ZookeeperServers = out
		return nil
	},
	"interface": func(p *parser, k string, v any) error {
		return parseObject(k, v, map[string]keyFunc{
			"manage": boolKey(func(c *Config) *bool { return &c.Interface.Manage }),
			"name":   stringKey(func(c *Config) *string { return &c.Interface.Name }, validIfName),
		}, p)
	},
	"watchdog": func(p *parser, k string, v any) error {
		return parseObject(k, v, map[string]keyFunc{
			"interval": durationKey(func(c *Config) *time.Duration { return &c.Watchdog.Interval }),
			"grace":    durationKey(func(c *Config) *time.Duration { return &c.Watchdog.Grace }),
		}, p)
	},
	"cache": parseCache,
	"limits": func(p *parser, k string, v any) error {
		return parseObject(k, v, map[string]keyFunc{
			"tcp_connections":  intKey(func(c *Config) *int { return &c.Limits.TCPConnections }, 1, 1<<31-1),
			"tcp_pipeline":     intKey(func(c *Config) *int { return &c.Limits.TCPPipeline }, 1, 1<<31-1),
			"tcp_idle_timeout": durationKey(func(c *Config) *time.Duration { return &c.Limits.TCPIdleTimeout }),
			"tcp_read_timeout": durationKey(func(c *Config) *time.Duration { return &c.Limits.TCPReadTimeout }),
			"udp_payload_max":  intKey(func(c *Config) *int { return &c.Limits.UDPPayloadMax }, 512, 65535),
			"tcp_message_max":  intKey(func(c *Config) *int { return &c.Limits.TCPMessageMax }, 512, 65535),
		}, p)
	},
}

func topLevelNames() []string {
	names := make([]string, 0, len(topLevel))
	for k := range topLevel {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// parseObject applies the sub-key parsers of a nested object; sub-keys it
// does not set keep their defaults. Errors name the dotted key.
func parseObject(key string, v any, fields map[string]keyFunc, p *parser) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return &KeyError{Key: key, Err: fmt.Errorf("expected an object, got %s", describe(v))}
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	subs := make([]string, 0, len(obj))
	for k := range obj {
		subs = append(subs, k)
	}
	sort.Strings(subs)
	for _, sk := range subs {
		full := key + "." + sk
		fn, ok := fields[sk]
		if !ok {
			return &KeyError{Key: full, Err: errors.New(unknownKeyMsg(sk, names))}
		}
		if err := fn(p, full, obj[sk]); err != nil {
			return asKeyError(full, err)
		}
	}
	return nil
}

func intKey(field func(*Config) *int, lo, hi int) keyFunc {
	return func(p *parser, k string, v any) error {
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("expected an integer %d..%d, got %s", lo, hi, describe(v))
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return fmt.Errorf("expected an integer %d..%d, got %s", lo, hi, n)
		}
		if i < int64(lo) || i > int64(hi) {
			return fmt.Errorf("%d is out of range %d..%d", i, lo, hi)
		}
		*field(p.cfg) = int(i)
		return nil
	}
}

func boolKey(field func(*Config) *bool) keyFunc {
	return func(p *parser, k string, v any) error {
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("expected true or false, got %s", describe(v))
		}
		*field(p.cfg) = b
		return nil
	}
}

func durationKey(field func(*Config) *time.Duration) keyFunc {
	return func(p *parser, k string, v any) error {
		s, ok := v.(string)
		if !ok {
			// A bare number is refused rather than guessed at: "5" could
			// mean seconds (the original's unit) or milliseconds.
			return fmt.Errorf(`expected a duration string such as "5s" or "500ms", got %s`, describe(v))
		}
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		*field(p.cfg) = d
		return nil
	}
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q (expected a form such as "5s" or "500ms"): %w`, s, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be greater than zero", s)
	}
	return d, nil
}

func stringKey(field func(*Config) *string, valid func(string) error) keyFunc {
	return func(p *parser, k string, v any) error {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("expected a string, got %s", describe(v))
		}
		if err := valid(s); err != nil {
			return err
		}
		*field(p.cfg) = s
		return nil
	}
}

func validMasterSource(s string) error {
	if slices.Contains(masterSources, s) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(masterSources, ", "))
}

// validExhibitorAddress accepts a host name or an IP address: the port
// (8181) and path are fixed by the exhibitor protocol.
func validExhibitorAddress(s string) error {
	if s == "" {
		return errors.New("empty address")
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return nil
	}
	if strings.Contains(s, "://") || strings.ContainsAny(s, "/:") {
		return fmt.Errorf("%q is not a host: give the name or IP only (it is polled at http://HOST:8181/exhibitor/v1/cluster/status); use exhibitor_uri for a full URL", s)
	}
	return validHostname(s)
}

func validHostname(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not a valid host name", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid host name", s)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a valid host name (character %q)", s, r)
			}
		}
	}
	return nil
}

func validExhibitorURI(s string) error {
	if s == "" {
		return errors.New("empty URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q: no host", s)
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

func validPath(s string) error {
	if s == "" {
		return errors.New("empty path")
	}
	if strings.ContainsRune(s, 0) {
		return errors.New("path contains a NUL byte")
	}
	return nil
}

// maxSocketPath is the room in sockaddr_un.sun_path, less the terminating NUL.
const maxSocketPath = 107

func validSocketPath(s string) error {
	if err := validPath(s); err != nil {
		return err
	}
	if len(s) > maxSocketPath {
		return fmt.Errorf("socket path is %d bytes, longer than the %d a unix socket allows", len(s), maxSocketPath)
	}
	return nil
}

// validZKPath checks a ZooKeeper node path: absolute, no empty, "." or ".."
// components, no trailing slash (ZooKeeper refuses all of these).
func validZKPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q must start with /", s)
	}
	if s == "/" {
		return nil
	}
	for c := range strings.SplitSeq(s[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%q is not a valid ZooKeeper path", s)
		}
	}
	return nil
}

// validHTTPListen accepts "" (disabled) or ip:port. Port 0 (an ephemeral
// port) is allowed: tests use it, and the bound address is logged.
func validHTTPListen(s string) error {
	if s == "" {
		return nil
	}
	if _, err := netip.ParseAddrPort(s); err != nil {
		return fmt.Errorf(`%q is not "ip:port" or "": %w`, s, err)
	}
	return nil
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf(`expected "host:port": %w`, err)
	}
	if host == "" {
		return errors.New("empty host")
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if err := validHostname(host); err != nil {
			return err
		}
	}
	_, err = parsePort(port)
	return err
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not 1..65535", s)
	}
	return uint16(n), nil
}

// validIfName follows the kernel's dev_valid_name: 1..15 bytes, not "." or
// "..", no '/', ':' or whitespace.
func validIfName(s string) error {
	if s == "" || len(s) > 15 {
		return fmt.Errorf("interface name %q must be 1..15 bytes long", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a valid interface name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f || r > 0x7e {
			return fmt.Errorf("interface name %q contains the invalid character %q", s, r)
		}
	}
	return nil
}

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
	out := make([]netip.Addr, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("entry %d: expected an IP string, got %s", i, describe(e))
		}
		a, err := parseIP(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("entry %d: %s listed twice", i, a)
		}
		out = append(out, a)
	}
	return out, nil
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
	out := make([]netip.AddrPort, 0, len(arr))
	for i, e := range arr {
		ap, err := parseUpstream(e)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if slices.Contains(out, ap) {
			return nil, fmt.Errorf("entry %d: %s listed twice", i, ap)
		}
		out = append(out, ap)
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

// applyEnv lets MASTER_SOURCE, EXHIBITOR_ADDRESS and EXHIBITOR_URI override
// the file. An empty variable is taken as unset.
func (p *parser) applyEnv(getenv func(string) string) error {
	envs := []struct {
		name, key string
		field     *string
		valid     func(string) error
	}{
		{EnvMasterSource, "master_source", &p.cfg.MasterSource, validMasterSource},
		{EnvExhibitorAddress, "exhibitor_address", &p.cfg.ExhibitorAddress, validExhibitorAddress},
		{EnvExhibitorURI, "exhibitor_uri", &p.cfg.ExhibitorURI, validExhibitorURI},
	}
	for _, e := range envs {
		s := getenv(e.name)
		if s == "" {
			continue
		}
		if err := e.valid(s); err != nil {
			return &KeyError{Key: e.name, Err: fmt.Errorf("from the environment: %w", err)}
		}
		*e.field = s
		p.set[e.key] = true
	}
	return nil
}

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
