package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/watchdog"
)

func init() {
	commands["genresolv"] = command{run: runGenresolv, flags: func(fs *flag.FlagSet) { genresolvFlags(fs, "") }}
}

type genresolvOpts struct {
	config, resolvers, search, upstreams string
	timeout                              time.Duration
}

// genresolvFlags declares the flags; defUpstreams is -upstreams' default.
func genresolvFlags(fs *flag.FlagSet, defUpstreams string) *genresolvOpts {
	o := &genresolvOpts{}
	fs.StringVar(&o.config, "config", "", "configuration `PATH` (its bind_ips and udp_port are checked)")
	fs.StringVar(&o.resolvers, "resolvers", "", "fallback resolvers, comma-separated `ip[:port]` (default: env RESOLVERS)")
	fs.StringVar(&o.search, "search", "", "space-separated search `DOMAINS` (default: env SEARCH)")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "how long each Spartan IP is given to answer")
	fs.StringVar(&o.upstreams, "upstreams", defUpstreams, "the node's upstreams `FILE`: saved from PATH's nameservers before PATH is first rewritten; the fallback when neither -resolvers nor RESOLVERS is given")
	return o
}

// maxFallback is how many fallback resolvers are listed: glibc reads at
// most three nameserver lines (MAXNS).
const maxFallback = 3

type genresolvDeps struct {
	load   func(path string) (*config.Config, error)
	getenv func(string) string
	// probe checks one Spartan address; genresolv only needs UDP, the
	// transport resolv.conf clients use first.
	probe  func(ctx context.Context, addr netip.AddrPort, timeout time.Duration) error
	rand   *rand.Rand
	rename func(oldpath, newpath string) error
	// upstreams is the node's upstreams file (-upstreams default; "": none).
	upstreams string
	stdout    io.Writer
	stderr    io.Writer
}

func udpProbe(ctx context.Context, addr netip.AddrPort, timeout time.Duration) error {
	return watchdog.ProbeAddrs(ctx, addr, netip.AddrPort{}, timeout)
}

func runGenresolv(g globals, args []string) int {
	return genresolvMain(withConfig(g, args), genresolvDeps{
		load:      loadConfig,
		getenv:    os.Getenv,
		probe:     udpProbe,
		rand:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		rename:    os.Rename,
		upstreams: config.DefaultUpstreamsPath,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
	})
}

func genresolvMain(args []string, d genresolvDeps) int {
	fs := newFlagSet("genresolv", d.stderr)
	o := genresolvFlags(fs, d.upstreams)
	cfgPath, resolversFlag, searchFlag, timeout, upstreamsFlag := &o.config, &o.resolvers, &o.search, &o.timeout, &o.upstreams
	// Flags may follow PATH too ("genresolv /etc/resolv.conf -search x"):
	// the flag package stops at the first positional argument, so parse
	// the rest again.
	var paths []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(paths) != 1 {
		fmt.Fprintf(d.stderr, "spartanctl genresolv: want exactly one PATH, got %d\n", len(paths))
		fs.Usage()
		return 2
	}
	path := paths[0]
	if *timeout <= 0 {
		fmt.Fprintln(d.stderr, "spartanctl genresolv: -timeout must be positive")
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg, err := d.load(*cfgPath)
	if err != nil {
		fmt.Fprintf(d.stderr, "spartanctl genresolv: %v\n", err)
		return 2
	}
	resolversRaw, resolversFrom := d.getenv("RESOLVERS"), "RESOLVERS"
	if set["resolvers"] {
		resolversRaw, resolversFrom = *resolversFlag, "-resolvers"
	}
	searchRaw := d.getenv("SEARCH")
	if set["search"] {
		searchRaw = *searchFlag
	}

	resolvers, skipped := parseResolvers(resolversRaw)
	for _, s := range skipped {
		fmt.Fprintf(d.stderr, "spartanctl genresolv: %s: skipping %s\n", resolversFrom, s)
	}
	if *upstreamsFlag != "" {
		saved, err := saveUpstreams(path, *upstreamsFlag, cfg.BindIPs, d.rename)
		if err != nil {
			fmt.Fprintf(d.stderr, "spartanctl genresolv: %v\n", err)
			return 1
		}
		if len(saved) > 0 {
			fmt.Fprintf(d.stdout, "saved the upstream resolvers %v of %s in %s\n", saved, path, *upstreamsFlag)
		}
		if !set["resolvers"] && d.getenv("RESOLVERS") == "" {
			ns, err := config.ResolvConfNameservers(*upstreamsFlag)
			if err != nil && !errors.Is(err, iofs.ErrNotExist) {
				fmt.Fprintf(d.stderr, "spartanctl genresolv: %v\n", err)
			}
			resolvers = ns
		}
	}
	port := uint16(cfg.UDPPort)
	live := liveSpartans(context.Background(), cfg.BindIPs, port, *timeout, d.probe)
	rc := resolvConf{
		live:     live,
		port:     port,
		search:   strings.Fields(searchRaw),
		fallback: pickFallback(resolvers, cfg.BindIPs, maxFallback, d.rand),
	}
	if len(rc.live) == 0 && len(rc.fallback) == 0 {
		fmt.Fprintf(d.stderr, "spartanctl genresolv: no Spartan IP of %v answers ready.spartan on UDP port %d and no fallback resolver is given (-resolvers or RESOLVERS): %s left unchanged\n", cfg.BindIPs, port, path)
		return 1
	}
	if err := writeReplace(path, []byte(rc.render()), 0o644, d.rename); err != nil {
		fmt.Fprintf(d.stderr, "spartanctl genresolv: %v\n", err)
		return 1
	}
	if len(rc.live) > 0 {
		fmt.Fprintf(d.stdout, "wrote %s: Spartan %v\n", path, rc.live)
	} else {
		fmt.Fprintf(d.stdout, "wrote %s: no Spartan IP answers; fallback %v\n", path, rc.fallback)
	}
	return 0
}

// liveSpartans checks every IP at port at once and returns those that
// answered, in the configuration's order.
func liveSpartans(ctx context.Context, ips []netip.Addr, port uint16, timeout time.Duration,
	probe func(context.Context, netip.AddrPort, time.Duration) error) []netip.Addr {
	ok := make([]bool, len(ips))
	var wg sync.WaitGroup
	for i, ip := range ips {
		wg.Go(func() { ok[i] = probe(ctx, netip.AddrPortFrom(ip, port), timeout) == nil })
	}
	wg.Wait()
	var live []netip.Addr
	for i, ip := range ips {
		if ok[i] {
			live = append(live, ip)
		}
	}
	return live
}

// parseResolvers splits a RESOLVERS-style list. Entries naming a port other
// than 53 cannot go in resolv.conf and are skipped, as are unparsable ones;
// skipped says why for each. Duplicates are dropped.
func parseResolvers(list string) (ips []netip.Addr, skipped []string) {
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ap, err := parseAddrPort(f, 53)
		switch {
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("%q (not ip[:port])", f))
		case ap.Port() != 53:
			skipped = append(skipped, fmt.Sprintf("%q (port %d: resolv.conf can only use port 53)", f, ap.Port()))
		case !slices.Contains(ips, ap.Addr()):
			ips = append(ips, ap.Addr())
		}
	}
	return ips, skipped
}

// pickFallback shuffles the resolvers, leaving out Spartan's own IPs (none
// of which answered), and keeps at most n. Shuffling spreads the nodes of a
// cluster over the resolvers while Spartan is down.
func pickFallback(resolvers, own []netip.Addr, n int, r *rand.Rand) []netip.Addr {
	var out []netip.Addr
	for _, ip := range resolvers {
		if !slices.Contains(own, ip) {
			out = append(out, ip)
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

type resolvConf struct {
	live     []netip.Addr
	port     uint16
	search   []string
	fallback []netip.Addr
}

func (rc resolvConf) render() string {
	var b strings.Builder
	b.WriteString("# Generated by spartanctl genresolv. Do not edit: it is rewritten\n")
	b.WriteString("# whenever spartan-gen-resolvconf runs.\n")
	if len(rc.live) > 0 {
		b.WriteString("# These are the Spartan IPs that answered ready.spartan.\n")
		if rc.port != 53 {
			fmt.Fprintf(&b, "# Spartan listens on port %d, but resolv.conf cannot name a port:\n", rc.port)
			b.WriteString("# the nameserver lines below are queried on port 53.\n")
		}
	} else {
		b.WriteString("# No Spartan IP answered ready.spartan: these are fallback resolvers.\n")
	}
	b.WriteString("options timeout:1\n")
	b.WriteString("options attempts:3\n")
	if len(rc.search) > 0 {
		b.WriteString("search " + strings.Join(rc.search, " ") + "\n")
	}
	ns := rc.live
	if len(ns) == 0 {
		ns = rc.fallback
	}
	for _, ip := range ns {
		b.WriteString("nameserver " + ip.String() + "\n")
	}
	return b.String()
}

// writeReplace replaces path with data atomically: readers see the old file
// or the new one, never a partial one. A rename onto a bind-mount target
// fails with EBUSY (Docker and Kubernetes mount /etc/resolv.conf); then the
// only way is to rewrite the file in place.
func writeReplace(path string, data []byte, perm os.FileMode, rename func(oldpath, newpath string) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	cleanup := func() { _ = os.Remove(tmpName) }
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("chmod %s: %w", tmpName, err)
	}
	// Durable before it becomes visible: a crash must not leave an empty
	// resolv.conf behind.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("close %s: %w", tmpName, err)
	}
	err = rename(tmpName, path)
	if err == nil {
		return nil
	}
	cleanup()
	if !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if err := writeInPlace(path, data); err != nil {
		return fmt.Errorf("replace %s: rename: EBUSY; in place: %w", path, err)
	}
	return nil
}

func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
