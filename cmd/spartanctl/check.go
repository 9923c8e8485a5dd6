package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/ctl"
	"github.com/spartan-dns/spartan/actors/watchdog"
)

func init() {
	commands["check"] = command{run: runCheck, flags: func(fs *flag.FlagSet) { checkFlags(fs) }}
}

type checkOpts struct {
	addr, config string
	timeout      time.Duration
}

func checkFlags(fs *flag.FlagSet) *checkOpts {
	o := &checkOpts{}
	fs.StringVar(&o.addr, "addr", "", "probe `IP[:PORT]` instead of the configuration's first bind IP")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "give each transport this long")
	fs.StringVar(&o.config, "config", "", "configuration `PATH` for the default address")
	return o
}

// loadConfig reads the node's configuration for check and genresolv.
// upstream_resolvers is irrelevant to both, so the host's resolv.conf (which
// genresolv itself rewrites) is not consulted.
func loadConfig(path string) (*config.Config, error) {
	return config.LoadWith(path, os.Getenv, "")
}

type checkDeps struct {
	load func(path string) (*config.Config, error)
	// upstreams returns how many upstreams the daemon behind socket has
	// for names no other rule claims (the "default" route); nil: not asked.
	upstreams func(socket string) (int, error)
	probe     func(ctx context.Context, udp, tcp netip.AddrPort, timeout time.Duration) error
	stdout    io.Writer
	stderr    io.Writer
}

func runCheck(g globals, args []string) int {
	return checkMain(withConfig(g, args), checkDeps{load: loadConfig, upstreams: defaultUpstreams, probe: watchdog.ProbeAddrs, stdout: os.Stdout, stderr: os.Stderr})
}

func checkMain(args []string, d checkDeps) int {
	fs := newFlagSet("check", d.stderr)
	o := checkFlags(fs)
	addrFlag, timeout, cfgPath := &o.addr, &o.timeout, &o.config
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(d.stderr, "spartanctl check: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(d.stderr, "spartanctl check: -timeout must be positive")
		return 2
	}
	udp, tcp, err := checkTarget(*addrFlag, *cfgPath, d.load)
	if err != nil {
		fmt.Fprintf(d.stderr, "spartanctl check: %v\n", err)
		return 2
	}
	if err := d.probe(context.Background(), udp, tcp, *timeout); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(d.stderr, "spartanctl check: FAIL %s\n", line)
		}
		return 1
	}
	// The node's own daemon (no -addr) must also have somewhere to send
	// the names no local rule answers: without upstreams it serves only
	// the local zones, *.mesos and forward_zones, and every other name
	// fails. Asked over the control socket; a socket we cannot reach only
	// skips this part (the DNS probe passed).
	if *addrFlag == "" && d.upstreams != nil {
		if cfg, err := d.load(*cfgPath); err == nil && cfg.CtlSocket != "" {
			n, err := d.upstreams(cfg.CtlSocket)
			switch {
			case err != nil:
				fmt.Fprintf(d.stderr, "spartanctl check: upstreams not checked: %v\n", err)
			case n == 0:
				fmt.Fprintf(d.stderr, "spartanctl check: FAIL no upstream resolvers: names outside the local zones, *.mesos and forward_zones get SERVFAIL; set upstream_resolvers in the config or nameserver lines in %s\n", config.DefaultUpstreamsPath)
				return 1
			}
		}
	}
	fmt.Fprintf(d.stdout, "ok: ready.spartan is 127.0.0.1 via %s\n", describeTarget(udp, tcp))
	return 0
}

// defaultUpstreams asks the daemon for its upstreams and counts those of
// the default route.
func defaultUpstreams(socket string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	resp, err := ctl.Call(ctx, socket, ctl.Request{Cmd: ctl.CmdUpstreams})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range resp.Upstreams {
		if slices.Contains(u.Routes, "default") {
			n++
		}
	}
	return n, nil
}

// checkTarget works out the UDP and TCP addresses to probe; a zero AddrPort
// means that transport is not probed.
func checkTarget(addrFlag, cfgPath string, load func(string) (*config.Config, error)) (udp, tcp netip.AddrPort, err error) {
	if addrFlag != "" {
		ap, err := parseAddrPort(addrFlag, 53)
		if err != nil {
			return udp, tcp, fmt.Errorf("-addr: %w", err)
		}
		return ap, ap, nil
	}
	cfg, err := load(cfgPath)
	if err != nil {
		return udp, tcp, err
	}
	if len(cfg.BindIPs) == 0 {
		return udp, tcp, errors.New("the configuration has no bind IP to probe; use -addr")
	}
	udp, tcp = watchdog.Targets(cfg)
	if !udp.IsValid() && !tcp.IsValid() {
		return udp, tcp, errors.New("the configuration disables both the UDP and the TCP server: nothing to probe")
	}
	return udp, tcp, nil
}

func describeTarget(udp, tcp netip.AddrPort) string {
	switch {
	case udp == tcp:
		return "UDP and TCP " + udp.String()
	case !tcp.IsValid():
		return "UDP " + udp.String()
	case !udp.IsValid():
		return "TCP " + tcp.String()
	}
	return "UDP " + udp.String() + " and TCP " + tcp.String()
}

// parseAddrPort accepts "IP", "IP:PORT" and "[IPv6]:PORT"; a bare IP gets
// defPort.
func parseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("%q: zoned addresses are not supported", s)
		}
		return netip.AddrPortFrom(ip.Unmap(), defPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is neither IP nor IP:PORT", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
