package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spartan-dns/spartan/actors/config"
	"golang.org/x/sys/unix"
)

// checkFree fails when another process already serves one of the addresses
// this daemon is about to bind (a second spartan with the same config, or a
// daemon started by hand while systemd's spartan.socket holds the ports).
//
// Why a probe: the listeners bind with SO_REUSEPORT (a restarted listener
// binds before its predecessor closes), and so does the HTTP server (a
// reload's new process binds beside the old). The kernel lets any socket of
// the same user share such a port, so a second daemon would start without
// an error and quietly take part of the queries. A bind without
// SO_REUSEPORT fails against any socket that holds the address, with or
// without the option: that is the probe. Addresses we were handed
// (LISTEN_FDS) are ours already and not probed; nor is the HTTP address in
// a reload's new process, whose old process still serves it by design.
func checkFree(cfg *config.Config, inh inherited, reload bool) error {
	var errs []error
	probe := func(proto string, ap netip.AddrPort) {
		if ap.Port() == 0 || inh[sockKey{proto, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}] != nil {
			return
		}
		if err := bindProbe(proto, ap); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ip := range cfg.BindIPs {
		if cfg.UDPServerEnabled {
			probe("udp", netip.AddrPortFrom(ip, uint16(cfg.UDPPort)))
		}
		if cfg.TCPServerEnabled {
			probe("tcp", netip.AddrPortFrom(ip, uint16(cfg.TCPPort)))
		}
	}
	if cfg.HTTPListen != "" && !reload {
		if ap, err := netip.ParseAddrPort(cfg.HTTPListen); err == nil {
			probe("tcp", ap)
		}
	}
	return errors.Join(errs...)
}

// bindProbe binds a socket to ap without SO_REUSEPORT and closes it; an
// error only when the address is in use.
// IP_FREEBIND: a bind IP need not be on the link yet (the interface actor
// adds it); only a socket holding the address makes the probe fail.
func bindProbe(proto string, ap netip.AddrPort) error {
	ip := ap.Addr().Unmap()
	domain, level, freebind := unix.AF_INET, unix.IPPROTO_IP, unix.IP_FREEBIND
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	if ip.Is6() {
		domain, level, freebind = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	typ := unix.SOCK_DGRAM
	if proto == "tcp" {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil // the listener will fail the same way, and say so
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, level, freebind, 1)
	if proto == "tcp" {
		// Connections of an earlier process in TIME_WAIT do not hold the
		// port; only a listener does.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if ip.Is6() {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	// Only "in use" is this probe's to report; any other failure (no
	// permission for port 53, say) the listener meets and reports itself.
	if err := unix.Bind(fd, sa); errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("%s %s: already in use by another process (another spartan, or spartan.socket: use systemctl)", proto, ap)
	}
	return nil
}
