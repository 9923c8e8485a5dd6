// The key table: one typed parser per key, so that every error names its
// key, and the typed helpers the table is made of.

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"
)

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
	"http_pprof":           boolKey(func(c *Config) *bool { return &c.HTTPPprof }),
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
	"dnstap": func(p *parser, k string, v any) error {
		if err := parseObject(k, v, map[string]keyFunc{
			"socket": stringKey(func(c *Config) *string { return &c.Dnstap.Socket }, validSocketPath),
			"file":   stringKey(func(c *Config) *string { return &c.Dnstap.File }, validPath),
		}, p); err != nil {
			return err
		}
		if (p.cfg.Dnstap.Socket == "") == (p.cfg.Dnstap.File == "") {
			return errors.New(`want exactly one of "socket" and "file"`)
		}
		return nil
	},
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
