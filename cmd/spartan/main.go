// Command spartan is the node-local DNS forwarder daemon. This file parses
// flags, loads the config and runs the tree; tree.go says what the tree is.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/watchdog"
	"github.com/spartan-dns/spartan/cmd/internal/manual"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// page is the man page source, spartan(8); -h prints it as text.
//
//go:embed spartan.8.md
var page string

// options are the daemon's flags.
type options struct {
	config, level string
	reloadTimeout time.Duration
	version       bool
}

// newFlags declares the daemon's flags; the man page test reads the same set.
func newFlags(stderr io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("spartan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "config file (default "+config.DefaultConfigPath+" if it exists, else built-in defaults)")
	fs.StringVar(&o.level, "log-level", "info", "debug|info|warn|error")
	fs.DurationVar(&o.reloadTimeout, "reload-timeout", 30*time.Second, "how long a reload (SIGHUP) waits for the new process to serve before keeping the old one")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	return fs, o
}

// run returns the exit code: 0 after a clean stop, -h or -version, 2 for
// bad flags, stray arguments or config, 1 for anything else that stops the
// daemon.
func run(args []string, stdout, stderr io.Writer) int {
	// SIGHUP is a reload; catch it before anything else, so that one sent
	// while we start does not kill us (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The binary on disk, resolved now: an upgrade replaces that file, and
	// a reload must start the new one.
	exe, exeErr := os.Executable()
	fs, o := newFlags(stderr)
	const short = "usage: spartan [-config PATH] [-log-level LEVEL] [-reload-timeout D] | -version | -h\n"
	fs.Usage = func() {} // -h prints the page on stdout, errors the short usage on stderr
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, manual.Text(page))
			return 0
		}
		fmt.Fprint(stderr, short)
		return 2
	}
	if fs.NArg() != 0 {
		// A stray word or a forgotten -config must not start a daemon
		// with the built-in defaults (as root: port 53 on the host).
		fmt.Fprintf(stderr, "spartan: unexpected argument %q (a config file is given as -config PATH)\n%s", fs.Arg(0), short)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "spartan %s\n", Version)
		return 0
	}
	cfgPath, level, reloadTimeout := &o.config, &o.level, &o.reloadTimeout
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" || lvl == zerolog.NoLevel {
		fmt.Fprintf(stderr, "spartan: bad -log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Logger()

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		var ke *config.KeyError
		if errors.As(err, &ke) {
			log.Error().Str("key", ke.Key).Err(err).Msg("invalid config")
		} else {
			log.Error().Err(err).Msg("cannot load config")
		}
		return 2
	}
	if len(cfg.UpstreamResolvers) == 0 {
		cfgFile := *cfgPath
		if cfgFile == "" {
			cfgFile = config.DefaultConfigPath
		}
		log.Error().Str("set", "upstream_resolvers in "+cfgFile+", or nameserver lines in "+config.DefaultUpstreamsPath).
			Str("read", config.UpstreamsSource()).
			Msg("no upstream resolvers: names outside the local zones, *.mesos and forward_zones get SERVFAIL")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, handedOver := context.WithCancel(ctx)
	defer handedOver()
	reload := startedByReload()
	inh := inheritSockets(log)
	nInherited := len(inh)
	if err := checkFree(cfg, inh, reload); err != nil {
		log.Error().Err(err).Msg("not starting: another process serves our addresses")
		return 1
	}
	notify := newHandoffNotifier(watchdog.SdNotifier{}.Notify, log)
	d := newDaemon(cfg, log, inh, notify, reload)
	tag := routingTag(cfg)
	if reload {
		receiveCache(d.fwd.Cache, tag, log) // before we serve: the first answers may need it
	} else {
		_ = os.Unsetenv(envUpgradeCacheFD)
	}
	up := &upgrader{exe: exe, args: args, timeout: *reloadTimeout, log: log, files: d.handoverFiles,
		notify: watchdog.SdNotifier{}.Notify, cache: d.fwd.Cache, tag: tag}
	d.reloads = up
	// A reload comes as SIGHUP or as the control socket's reload command
	// (the unit's ExecReload: it waits for the outcome). Either way one
	// reload runs at a time (the upgrader refuses a second), and after a
	// hand-over this process stops.
	runReload := func(why string) (int, error) {
		if exeErr != nil {
			up.Failures.Add(1)
			log.Error().Err(exeErr).Msg("reload failed: cannot find our own binary; still serving")
			return 0, fmt.Errorf("cannot find our own binary: %w", exeErr)
		}
		log.Info().Msg("reload: " + why)
		pid, err := up.reload()
		if err != nil {
			log.Error().Err(err).Msg("reload failed; the running process keeps serving")
			return 0, err
		}
		log.Info().Int("new_pid", pid).Msg("reload: new process serving; stopping")
		return pid, nil
	}
	d.reload = func() (int, func(), error) {
		pid, err := runReload("requested on the control socket")
		return pid, handedOver, err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if _, err := runReload("SIGHUP"); err == nil {
				handedOver()
				return
			}
		}
	}()
	log.Info().Str("version", Version).Stringers("bind_ips", stringers(cfg.BindIPs)).Int("inherited_sockets", nInherited).Msg("spartan starting")
	code, err := d.run(ctx)
	if err != nil {
		log.Error().Err(err).Msg("spartan stopped with an error")
		return 1
	}
	log.Info().Int("exit_code", code).Msg("spartan stopped")
	return code
}

func stringers[T fmt.Stringer](xs []T) []fmt.Stringer {
	out := make([]fmt.Stringer, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
