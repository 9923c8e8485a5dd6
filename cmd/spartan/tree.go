package main

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/iface"
	"github.com/spartan-dns/spartan/actors/listener"
	"github.com/spartan-dns/spartan/actors/masters"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/actors/watchdog"
	"github.com/spartan-dns/spartan/msg"
	"github.com/spartan-dns/spartan/supervisor"
)

// Failure budgets. suture pauses every child of a supervisor once their
// shared budget is spent, so the budgets follow what a pause would cost:
// the listeners must never pause (a crash-looping listener costs a little
// CPU; paused listeners cost the node its DNS), the other groups may.
var (
	rootOpts  = supervisor.Options{FailureThreshold: 50, FailureDecay: 10, FailureBackoff: 2 * time.Second}
	dnsOpts   = supervisor.Options{FailureThreshold: 1000, FailureDecay: 1, FailureBackoff: time.Second}
	groupOpts = supervisor.Options{FailureThreshold: 10, FailureDecay: 10, FailureBackoff: 2 * time.Second}
)

// healthTick is how often the config actor folds the query path's
// counters into upstream health scores.
const healthTick = 100 * time.Millisecond

// daemon is everything one Spartan process runs.
type daemon struct {
	cfg   *config.Config
	log   zerolog.Logger
	store *state.Store
	fwd   *forwarder.Forwarder
	tree  *supervisor.Tree
	udp   []*listener.UDP
	tcp   []*listener.TCP

	// failed carries the exit code when an actor decides the process must
	// die (the watchdog after its grace period).
	failed chan int
}

func newDaemon(cfg *config.Config, log zerolog.Logger) *daemon {
	reg := state.NewRegistry()
	d := &daemon{cfg: cfg, log: log, store: state.NewStore(cfg, reg), failed: make(chan int, 1)}
	d.fwd = forwarder.New(d.store, log)
	d.tree = supervisor.New("spartan", rootOpts, log)
	root := d.tree.Root()

	// State: the config actor and the watcher that feeds it.
	inbox := make(chan msg.ToState, 16)
	stateSup := root.Supervisor("state", groupOpts)
	stateSup.Actor("config", state.NewActor(d.store, reg, inbox, healthTick, clock.Real{}, log.With().Str("actor", "config").Logger()))
	lookup := masters.UpstreamLookup(cfg.UpstreamResolvers, 2*time.Second)
	if w := masters.New(cfg, inbox, lookup, log.With().Str("actor", "masters").Logger(), clock.Real{}); w != nil {
		stateSup.Actor("masters", w)
	}

	// DNS: a UDP and a TCP listener per bind IP.
	dns := root.Supervisor("dns", dnsOpts)
	for _, ip := range cfg.BindIPs {
		if cfg.UDPServerEnabled {
			l := listener.NewUDP(netip.AddrPortFrom(ip, uint16(cfg.UDPPort)), d.fwd, log)
			d.udp = append(d.udp, l)
			dns.Actor("udp-"+ip.String(), l)
		}
		if cfg.TCPServerEnabled {
			l := listener.NewTCP(netip.AddrPortFrom(ip, uint16(cfg.TCPPort)), d.fwd, cfg.Limits, log)
			d.tcp = append(d.tcp, l)
			dns.Actor("tcp-"+ip.String(), l)
		}
	}

	// Node: the link that carries the bind IPs.
	node := root.Supervisor("node", groupOpts)
	if a := iface.New(cfg.Interface, cfg.BindIPs, log.With().Str("actor", "interface").Logger()); a != nil {
		node.Actor("interface", a)
	}
	if udp, tcp := watchdog.Targets(cfg); udp.IsValid() || tcp.IsValid() {
		node.Actor("watchdog", watchdog.New(udp, cfg.Watchdog.Interval, cfg.Watchdog.Grace, watchdog.SdNotifier{}, d.fail,
			log.With().Str("actor", "watchdog").Logger(), watchdog.WithUDPAddr(udp), watchdog.WithTCPAddr(tcp)))
	}

	d.addAPI(root)
	return d
}

// fail asks the daemon to stop and exit with code (non-zero). Called from
// an actor; never blocks.
func (d *daemon) fail(code int) {
	select {
	case d.failed <- code:
	default:
	}
}

// run serves until ctx is cancelled or an actor calls fail, then shuts down
// cleanly: the tree stops, in-flight queries are answered, sockets close.
// It returns the exit code.
func (d *daemon) run(ctx context.Context) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var code atomic.Int32
	go func() {
		select {
		case c := <-d.failed:
			code.Store(int32(c))
			d.log.Error().Int("exit_code", c).Msg("fatal: stopping")
			cancel()
		case <-ctx.Done():
		}
	}()
	err := d.tree.Serve(ctx)
	cancel()
	for _, l := range d.udp {
		l.Close()
	}
	for _, l := range d.tcp {
		l.Close()
	}
	return int(code.Load()), err
}
