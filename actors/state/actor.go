// Package state is Spartan's live state, what the supervision tree calls
// /spartan/state: the config actor (the one writer), the immutable
// Snapshot it publishes through Store for the query path to read without a
// lock, and the live values the snapshot points at, which outlive every
// snapshot: the *Upstream counters, health and latency histograms and the
// route hedge delays, handed out by the Registry.
//
// Files: actor.go (the config actor), snapshot.go (Snapshot, Store, Build),
// upstream.go (Upstream, health, Registry), latency.go (histograms),
// hedge.go (route hedge delays and all their bounds).
package state

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/msg"
)

// Actor is the config actor: the only writer of the Store. It owns the
// masters (fed by the masters watcher as msg.Masters) and the upstream
// health scores, and publishes a new Snapshot when masters change.
//
// The value survives restarts (suture calls Serve again on it), and so does
// its state: a killed config actor comes back with the masters it had, and
// the query path keeps reading the last snapshot while it is down.
type Actor struct {
	store *Store
	reg   *Registry
	inbox <-chan msg.ToState
	tick  time.Duration
	clock clock.Clock
	log   zerolog.Logger

	lastTick time.Time
}

// NewActor returns the config actor publishing to store. inbox carries
// msg.Masters and msg.ReadFailed; tick is how often health scores are
// recomputed (100 ms in production), on clk.
func NewActor(store *Store, reg *Registry, inbox <-chan msg.ToState, tick time.Duration, clk clock.Clock, log zerolog.Logger) *Actor {
	return &Actor{store: store, reg: reg, inbox: inbox, tick: tick, clock: clk, log: log}
}

// Serve implements suture.Service.
func (a *Actor) Serve(ctx context.Context) error {
	tick := a.clock.After(a.tick)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-a.inbox:
			a.handle(m)
		case <-tick:
			a.UpdateHealth()
			tick = a.clock.After(a.tick)
		}
	}
}

func (a *Actor) handle(m msg.ToState) {
	switch m := m.(type) {
	case msg.Masters:
		a.SetMasters(m.Source, m.IPs)
	case msg.ReadFailed:
		a.log.Warn().Str("source", m.Source).Err(m.Err).Msg("masters read failed; keeping the last known masters")
	}
}

// SetMasters publishes a new snapshot if ips differ from the current
// masters. ips must be deduplicated and sorted; an empty set is ignored (a
// cluster always has masters: empty means a bad read).
func (a *Actor) SetMasters(source string, ips []netip.Addr) {
	cur := a.store.Load()
	if len(ips) == 0 || slices.Equal(cur.Masters, ips) {
		return
	}
	ips = slices.Clone(ips)
	a.store.Publish(Build(cur.Config, ips, a.reg))
	a.log.Info().Str("source", source).Stringers("old", addrs(cur.Masters)).Stringers("new", addrs(ips)).Msg("masters changed")
}

// UpdateHealth folds the query path's counters into every upstream's score
// and recent latencies, and recomputes every route's hedge delay.
func (a *Actor) UpdateHealth() {
	now := a.clock.Now()
	dt := now.Sub(a.lastTick)
	if a.lastTick.IsZero() {
		dt = 0
	}
	a.lastTick = now
	snap := a.store.Load()
	for _, u := range snap.Upstreams {
		u.updateHealth(dt)
		u.foldLatency(dt)
	}
	snap.eachRoute(func(r *Route) { r.updateHedge() })
}

func addrs(ips []netip.Addr) []fmt.Stringer {
	out := make([]fmt.Stringer, len(ips))
	for i, ip := range ips {
		out[i] = ip
	}
	return out
}
