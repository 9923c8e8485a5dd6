// Package watchdog holds the watchdog actor and the ready.spartan probe it
// shares with `spartanctl check` and `spartanctl genresolv`.
//
// The actor proves the daemon answers DNS the way clients reach it (over UDP
// and TCP on a bind IP), tells systemd READY=1 the first time that works and
// WATCHDOG=1 after every later success, and exits the process when the
// probe has failed for the whole grace period, so the service manager
// restarts a daemon that is alive but no longer serving.
package watchdog

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
	"github.com/thejerf/suture/v4"

	"github.com/spartan-dns/spartan/actors/clock"
)

// StartupRetry is how often the actor probes while waiting for the first
// success (capped by the interval), so READY=1 follows the listeners by a
// fraction of a second rather than a whole interval.
const StartupRetry = 200 * time.Millisecond

// Notifier sends a state string ("READY=1", "WATCHDOG=1") to the service
// manager.
type Notifier interface {
	Notify(state string) error
}

// SdNotifier is the real Notifier: sd_notify through NOTIFY_SOCKET, and a
// no-op when NOTIFY_SOCKET is unset (not under systemd).
type SdNotifier struct{}

// Notify sends state to $NOTIFY_SOCKET.
func (SdNotifier) Notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(state string) error

// Notify calls f.
func (f NotifierFunc) Notify(state string) error { return f(state) }

// Option adjusts the actor.
type Option func(*Watchdog)

// WithClock replaces the real clock (tests pass test/fakeclock).
func WithClock(c clock.Clock) Option { return func(w *Watchdog) { w.clock = c } }

// WithProbe replaces the network probe (tests; or a daemon with unusual
// listeners).
func WithProbe(p func(ctx context.Context) error) Option { return func(w *Watchdog) { w.probe = p } }

// WithTCPAddr probes TCP at addr instead of the UDP address, for a daemon
// whose tcp_port differs from its udp_port. A zero AddrPort skips TCP (TCP
// server disabled).
func WithTCPAddr(addr netip.AddrPort) Option { return func(w *Watchdog) { w.tcp = addr } }

// WithUDPAddr probes UDP at addr instead of New's addr; a zero AddrPort
// skips UDP (UDP server disabled).
func WithUDPAddr(addr netip.AddrPort) Option { return func(w *Watchdog) { w.udp = addr } }

// WithProbeTimeout sets how long one probe may take (default: a third of
// the interval, between 500 ms and 5 s).
func WithProbeTimeout(d time.Duration) Option { return func(w *Watchdog) { w.timeout = d } }

// Watchdog is the actor. Its state outlives suture restarts: READY=1 is sent
// once per process, and a failure streak is not forgotten because the actor
// was restarted in the middle of it.
type Watchdog struct {
	udp, tcp netip.AddrPort
	interval time.Duration
	grace    time.Duration
	timeout  time.Duration
	notify   Notifier
	fail     func(code int)
	log      zerolog.Logger
	clock    clock.Clock
	probe    func(ctx context.Context) error

	readySent atomic.Bool
	passes    atomic.Int64
	failures  atomic.Int64

	mu           sync.Mutex
	failingSince time.Time // zero while passing
	lastErr      string    // last probe error logged
}

// ErrGraceExpired is what Serve returns after it called fail; it wraps
// suture.ErrDoNotRestart, as the process is about to stop.
var ErrGraceExpired = fmt.Errorf("watchdog: probe failed for the whole grace period, fail called: %w", suture.ErrDoNotRestart)

// New returns the watchdog actor probing addr (UDP and TCP) every interval;
// fail(1) is called once probes have failed for grace. notify nil means
// SdNotifier. In the daemon fail stops the tree cleanly and makes the
// process exit with the code, so the service manager restarts it.
func New(addr netip.AddrPort, interval, grace time.Duration, notify Notifier, fail func(code int), log zerolog.Logger, opts ...Option) suture.Service {
	return newWatchdog(addr, interval, grace, notify, fail, log, opts...)
}

func newWatchdog(addr netip.AddrPort, interval, grace time.Duration, notify Notifier, fail func(code int), log zerolog.Logger, opts ...Option) *Watchdog {
	if notify == nil {
		notify = SdNotifier{}
	}
	w := &Watchdog{
		udp: addr, tcp: addr,
		interval: interval, grace: grace,
		timeout: min(5*time.Second, max(interval/3, 500*time.Millisecond)),
		notify:  notify, fail: fail,
		log:   log,
		clock: clock.Real{},
	}
	for _, o := range opts {
		o(w)
	}
	if w.probe == nil {
		w.probe = func(ctx context.Context) error { return ProbeAddrs(ctx, w.udp, w.tcp, w.timeout) }
	}
	return w
}

func (w *Watchdog) String() string { return "watchdog" }

// Ready reports whether READY=1 has been sent.
func (w *Watchdog) Ready() bool { return w.readySent.Load() }

// Counts returns the passing and failing probes so far.
func (w *Watchdog) Counts() (passes, failures int64) { return w.passes.Load(), w.failures.Load() }

// Serve probes at once, then every StartupRetry until the first pass, then
// every interval.
func (w *Watchdog) Serve(ctx context.Context) error {
	for {
		if err := w.check(ctx); err != nil {
			return err
		}
		wait := w.interval
		if !w.readySent.Load() {
			wait = min(w.interval, StartupRetry)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.clock.After(wait):
		}
	}
}

// check runs one probe and acts on it. It returns non-nil only when Serve
// must stop.
func (w *Watchdog) check(ctx context.Context) error {
	started := w.clock.Now()
	err := w.probe(ctx)
	if ctx.Err() != nil {
		// Cancelled mid-probe: the failure is ours, not the daemon's.
		return ctx.Err()
	}
	now := w.clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.passes.Add(1)
		if !w.failingSince.IsZero() && w.readySent.Load() {
			w.log.Info().Float64("failed_for_seconds", now.Sub(w.failingSince).Seconds()).Msg("probe passes again")
		}
		w.failingSince, w.lastErr = time.Time{}, ""
		if w.readySent.CompareAndSwap(false, true) {
			w.log.Info().Msg("serving: READY=1")
			w.send("READY=1")
		}
		w.send("WATCHDOG=1")
		return nil
	}
	w.failures.Add(1)
	if w.failingSince.IsZero() {
		w.failingSince = started
	}
	failedFor := now.Sub(w.failingSince)
	if !w.readySent.Load() {
		// Before the first pass the listeners are usually still binding:
		// that is startup, not a failure, so it is no "probe failed" line.
		if msg := err.Error(); msg != w.lastErr {
			w.lastErr = msg
			w.log.Debug().Err(err).Float64("waiting_seconds", failedFor.Seconds()).Msg("not serving yet")
		}
	} else if msg := err.Error(); msg != w.lastErr {
		w.lastErr = msg
		// Both durations in seconds, so a reader compares them at a glance.
		w.log.Warn().Err(err).Float64("failing_for_seconds", failedFor.Seconds()).
			Float64("grace_seconds", w.grace.Seconds()).Msg("probe failed")
	}
	if failedFor >= w.grace {
		w.log.Error().Err(err).Float64("failing_for_seconds", failedFor.Seconds()).
			Float64("grace_seconds", w.grace.Seconds()).
			Msg("probe failed for the whole grace period; exiting so the service manager restarts us")
		w.fail(1)
		return ErrGraceExpired
	}
	return nil
}

func (w *Watchdog) send(state string) {
	if err := w.notify.Notify(state); err != nil {
		w.log.Warn().Err(err).Msg("notify failed")
	}
}
