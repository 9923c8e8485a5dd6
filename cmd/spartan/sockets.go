package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Environment of a process started by a reload (upgrade.go): the parent's
// PID (so the child can claim LISTEN_FDS, whose LISTEN_PID the parent
// cannot know before the fork) and the descriptor it reports readiness on.
const (
	envUpgradeParent = "SPARTAN_UPGRADE_PARENT"
	envUpgradeFD     = "SPARTAN_UPGRADE_FD"
)

// sockKey names an inherited socket by what the listeners need of it.
type sockKey struct {
	proto string // "udp" or "tcp"
	addr  netip.AddrPort
}

// inherited holds the sockets passed with LISTEN_FDS (by systemd, or by the
// process we replace), by protocol and local address.
type inherited map[sockKey]*os.File

// inheritSockets takes the LISTEN_FDS sockets. A socket that is neither a
// bound UDP socket nor a listening TCP socket is logged and closed.
func inheritSockets(log zerolog.Logger) inherited {
	// A process started by a reload has LISTEN_FDS meant for it, but its
	// parent could not know its PID: claim them when our parent says so.
	if startedByReload() {
		_ = os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	_ = os.Unsetenv(envUpgradeParent)
	out := inherited{}
	for _, f := range activation.Files(true) {
		k, err := describe(f)
		if err != nil {
			log.Warn().Err(err).Str("fd", f.Name()).Msg("ignoring an inherited descriptor")
			_ = f.Close()
			continue
		}
		if out[k] != nil {
			log.Warn().Str("fd", f.Name()).Str("proto", k.proto).Stringer("addr", k.addr).Msg("ignoring a second inherited socket for the same address")
			_ = f.Close()
			continue
		}
		out[k] = f
	}
	return out
}

// startedByReload tells whether this process was started by a reload of
// the running daemon (upgrade.go), which is its parent; true only until
// inheritSockets has claimed the sockets.
func startedByReload() bool {
	return os.Getenv(envUpgradeParent) == strconv.Itoa(os.Getppid())
}

// take returns the inherited socket for proto and addr, if any, and
// forgets it.
func (in inherited) take(proto string, addr netip.AddrPort) *os.File {
	k := sockKey{proto, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())}
	f := in[k]
	delete(in, k)
	return f
}

// rest logs and closes the sockets no listener took (addresses that are
// not bind IPs: a socket unit and a config that disagree).
func (in inherited) rest(log zerolog.Logger) {
	for k, f := range in {
		log.Warn().Str("proto", k.proto).Stringer("addr", k.addr).Msg("inherited socket matches no bind IP and port; not serving it")
		_ = f.Close()
	}
}

// describe tells the protocol and local address of an inherited socket.
func describe(f *os.File) (sockKey, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return sockKey{}, err
	}
	var (
		typ, listening int
		sa             unix.Sockaddr
		serr           error
	)
	if err := rc.Control(func(fd uintptr) {
		if typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		if typ == unix.SOCK_STREAM {
			if listening, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); serr != nil {
				return
			}
		}
		sa, serr = unix.Getsockname(int(fd))
	}); err != nil {
		return sockKey{}, err
	}
	if serr != nil {
		return sockKey{}, fmt.Errorf("not a socket: %w", serr)
	}
	var addr netip.AddrPort
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		addr = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		addr = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	default:
		return sockKey{}, fmt.Errorf("not an IP socket")
	}
	switch {
	case typ == unix.SOCK_DGRAM:
		return sockKey{"udp", addr}, nil
	case typ == unix.SOCK_STREAM && listening == 1:
		return sockKey{"tcp", addr}, nil
	default:
		return sockKey{}, fmt.Errorf("socket on %s is neither UDP nor a listening TCP socket", addr)
	}
}
