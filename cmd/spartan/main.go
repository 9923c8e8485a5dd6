// Command spartan is the node-local DNS forwarder daemon. This file parses
// flags, loads the config and runs the tree; tree.go says what the tree is.
package main

import (
	"context"
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
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run returns the exit code: 0 after a clean stop, 2 for bad flags or
// config, 1 for anything else that stops the daemon.
func run(args []string, stderr io.Writer) int {
	// SIGHUP is a reload; catch it before anything else, so that one sent
	// while we start does not kill us (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The binary on disk, resolved now: an upgrade replaces that file, and
	// a reload must start the new one.
	exe, exeErr := os.Executable()
	fs := flag.NewFlagSet("spartan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default "+config.DefaultConfigPath+" if it exists, else built-in defaults)")
	level := fs.String("log-level", "info", "debug|info|warn|error")
	reloadTimeout := fs.Duration("reload-timeout", 30*time.Second, "how long a reload (SIGHUP) waits for the new process to serve before keeping the old one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
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
		fmt.Fprintf(stderr, "spartan: %v\n", err)
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
	inh := inheritSockets(log)
	nInherited := len(inh)
	notify := newHandoffNotifier(watchdog.SdNotifier{}.Notify, log)
	d := newDaemon(cfg, log, inh, notify)
	up := &upgrader{exe: exe, args: args, timeout: *reloadTimeout, log: log, files: d.handoverFiles,
		notify: watchdog.SdNotifier{}.Notify}
	d.reloads = up
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if exeErr != nil {
				up.Failures.Add(1)
				log.Error().Err(exeErr).Msg("reload failed: cannot find our own binary; still serving")
				continue
			}
			log.Info().Msg("reload: SIGHUP")
			pid, err := up.reload()
			if err != nil {
				log.Error().Err(err).Msg("reload failed; the running process keeps serving")
				continue
			}
			log.Info().Int("new_pid", pid).Msg("reload: new process serving; stopping")
			handedOver()
			return
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
