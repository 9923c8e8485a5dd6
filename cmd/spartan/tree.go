package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/ctl"
	"github.com/spartan-dns/spartan/actors/dnstap"
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

	tap *dnstap.Tap // nil: dnstap off

	reloaded bool // started by a reload (newDaemon)

	// mastersRead is the masters watcher's last good read (nil: none runs).
	mastersRead func() time.Time

	reloads *upgrader    // nil in tests that build a daemon without main
	reload  ctl.Reloader // the control socket's reload; nil in those tests

	// failed carries the exit code when an actor decides the process must
	// die (the watchdog after its grace period).
	failed chan int
}

// newDaemon builds the tree. inh holds the sockets handed to us
// (LISTEN_FDS): a listener whose address has one serves it instead of
// binding its own. notify is the watchdog's sd_notify.
// reloaded says a reload of the running daemon started this process: it
// takes the control socket over from its parent at once.
func newDaemon(cfg *config.Config, log zerolog.Logger, inh inherited, notify watchdog.Notifier, reloaded bool) *daemon {
	reg := state.NewRegistry()
	d := &daemon{cfg: cfg, log: log, store: state.NewStore(cfg, reg), failed: make(chan int, 1), reloaded: reloaded}
	d.fwd = forwarder.New(d.store, log)
	if tap := dnstap.New(cfg.Dnstap.Socket, cfg.Dnstap.File, "spartan "+Version, log.With().Str("actor", "dnstap").Logger()); tap != nil {
		d.fwd.Tap, d.tap = tap, tap
	}
	d.tree = supervisor.New("spartan", rootOpts, log)
	root := d.tree.Root()

	// State: the config actor and the watcher that feeds it.
	inbox := make(chan msg.ToState, 16)
	stateSup := root.Supervisor("state", groupOpts)
	stateSup.Actor("config", state.NewActor(d.store, reg, inbox, healthTick, clock.Real{}, log.With().Str("actor", "config").Logger()))
	lookup := masters.UpstreamLookup(cfg.UpstreamResolvers, 2*time.Second)
	if w := masters.New(cfg, inbox, lookup, log.With().Str("actor", "masters").Logger(), clock.Real{}); w != nil {
		stateSup.Actor("masters", w)
		if lr, ok := w.(interface{ LastGoodRead() time.Time }); ok {
			d.mastersRead = lr.LastGoodRead
		}
	}

	// DNS: a UDP and a TCP listener per bind IP.
	dns := root.Supervisor("dns", dnsOpts)
	for _, ip := range cfg.BindIPs {
		if cfg.UDPServerEnabled {
			addr := netip.AddrPortFrom(ip, uint16(cfg.UDPPort))
			l := listener.NewUDP(addr, d.fwd, log)
			if f := inh.take("udp", addr); f != nil {
				l.Inherit(f)
			}
			d.udp = append(d.udp, l)
			dns.Actor("udp-"+ip.String(), l)
		}
		if cfg.TCPServerEnabled {
			addr := netip.AddrPortFrom(ip, uint16(cfg.TCPPort))
			l := listener.NewTCP(addr, d.fwd, cfg.Limits, log)
			if f := inh.take("tcp", addr); f != nil {
				l.Inherit(f)
			}
			d.tcp = append(d.tcp, l)
			dns.Actor("tcp-"+ip.String(), l)
		}
	}
	inh.rest(log)

	// Node: the link that carries the bind IPs.
	node := root.Supervisor("node", groupOpts)
	if a := iface.New(cfg.Interface, cfg.BindIPs, log.With().Str("actor", "interface").Logger()); a != nil {
		node.Actor("interface", a)
	}
	if udp, tcp := watchdog.Targets(cfg); udp.IsValid() || tcp.IsValid() {
		opts := []watchdog.Option{watchdog.WithUDPAddr(udp), watchdog.WithTCPAddr(tcp)}
		if h, ok := notify.(*handoffNotifier); ok && h.pending() {
			opts = append(opts, watchdog.WithProbe(d.selfProbe(udp, tcp, h)))
		}
		node.Actor("watchdog", watchdog.New(udp, cfg.Watchdog.Interval, cfg.Watchdog.Grace, notify, d.fail,
			log.With().Str("actor", "watchdog").Logger(), opts...))
	}

	d.addAPI(root)
	return d
}

// selfProbe is the watchdog probe of a process started by a reload, until
// it has taken over: the sockets are shared with the process we replace,
// so a passing probe may have been answered by that one. Each transport
// passes only if this process answered a local query meanwhile (the
// probe's, or a client's): proof that it reads those sockets itself.
func (d *daemon) selfProbe(udp, tcp netip.AddrPort, h *handoffNotifier) func(context.Context) error {
	timeout := min(5*time.Second, max(d.cfg.Watchdog.Interval/3, 500*time.Millisecond))
	return func(ctx context.Context) error {
		for _, p := range []struct {
			name     string
			udp, tcp netip.AddrPort
		}{{"udp", udp, netip.AddrPort{}}, {"tcp", netip.AddrPort{}, tcp}} {
			if !p.udp.IsValid() && !p.tcp.IsValid() {
				continue
			}
			before := d.localAnswers()
			if err := watchdog.ProbeAddrs(ctx, p.udp, p.tcp, timeout); err != nil {
				return err
			}
			if h.pending() && d.localAnswers() == before {
				return fmt.Errorf("%s probe answered by the process we replace, not yet by us", p.name)
			}
		}
		return nil
	}
}

// localAnswers is how many local-zone queries this process answered.
func (d *daemon) localAnswers() uint64 {
	return d.fwd.Stats.Queries[forwarder.RouteLocal][forwarder.OutcomeLocal].Load()
}

// handoverFiles returns, for a reload, one socket per listener bound to its
// address (inherited ones duplicated), named after the listener.
func (d *daemon) handoverFiles() ([]*os.File, error) {
	var files []*os.File
	add := func(f *os.File, err error) error {
		if err != nil {
			for _, f := range files {
				_ = f.Close()
			}
			return err
		}
		files = append(files, f)
		return nil
	}
	for _, l := range d.udp {
		if err := add(l.File()); err != nil {
			return nil, err
		}
	}
	for _, l := range d.tcp {
		if err := add(l.File()); err != nil {
			return nil, err
		}
	}
	return files, nil
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
	if err := d.tap.Close(); err != nil {
		d.log.Warn().Err(err).Msg("dnstap: closing the file")
	}
	return int(code.Load()), err
}
