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

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run returns the exit code: 0 after a clean stop, 2 for bad flags or
// config, 1 for anything else that stops the daemon.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("spartan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default "+config.DefaultConfigPath+" if it exists, else built-in defaults)")
	level := fs.String("log-level", "info", "debug|info|warn|error")
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
		log.Warn().Msg("no upstream_resolvers (none in the config or resolv.conf): names outside the local zones, mesos and forward_zones get SERVFAIL")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := newDaemon(cfg, log)
	log.Info().Str("version", Version).Stringers("bind_ips", stringers(cfg.BindIPs)).Msg("spartan starting")
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
