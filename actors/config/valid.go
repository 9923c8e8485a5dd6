// Validators of single string values: host names, URLs, paths, ports,
// interface names, ZooKeeper paths.

package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

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
		return fmt.Errorf("%q is not a host: give the name or IP only (it is polled at http://HOST:%s%s); use exhibitor_uri for a full URL", s, ExhibitorPort, ExhibitorStatusPath)
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
