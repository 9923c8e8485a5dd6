// Package masters holds the masters watcher actors. A watcher reads the
// cluster's masters from the configured master_source and reports every
// read to the config actor: msg.Masters after a good read, msg.ReadFailed
// after a failed one. It never holds state the rest of Spartan depends on;
// a failed read changes nothing, so the config actor keeps the last masters.
package masters

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/thejerf/suture/v4"

	"github.com/spartan-dns/spartan/actors/clock"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/msg"
)

// maxBody bounds what a read may return: a status or master list is a few
// hundred bytes.
const maxBody = 4 << 20

// New returns the watcher actor for cfg.MasterSource, or nil for "none" (and
// ""). out receives msg.Masters and msg.ReadFailed values; sends give up
// when the actor's context ends, so a stalled receiver cannot wedge a
// shutdown. A nil clk means clock.Real; a nil lookup makes every hostname
// that is not an IP literal a failed read.
func New(cfg *config.Config, out chan<- msg.ToState, lookup Lookup, log zerolog.Logger, clk clock.Clock) suture.Service {
	if clk == nil {
		clk = clock.Real{}
	}
	b := base{
		source:  cfg.MasterSource,
		out:     out,
		lookup:  lookup,
		log:     log.With().Str("actor", "masters").Str("source", cfg.MasterSource).Logger(),
		clock:   clk,
		normal:  positive(cfg.MastersRefreshNormal, config.DefaultMastersRefreshNormal),
		fail:    positive(cfg.MastersRefreshFail, config.DefaultMastersRefreshFail),
		timeout: positive(cfg.ExhibitorTimeout, config.DefaultExhibitorTimeout),
		goodAt:  new(atomic.Int64),
	}
	switch cfg.MasterSource {
	case "", config.MasterSourceNone:
		return nil
	case config.MasterSourceExhibitor:
		return &poller{base: b, read: newExhibitorReader(&b, exhibitorURL(cfg.ExhibitorAddress), cfg.ExhibitorAddress == "")}
	case config.MasterSourceExhibitorURI:
		return &poller{base: b, read: newExhibitorReader(&b, cfg.ExhibitorURI, cfg.ExhibitorURI == "")}
	case config.MasterSourceMasterList:
		path := cfg.MasterListFile
		return &poller{base: b, read: func(ctx context.Context) ([]netip.Addr, error) { return readMasterList(path) }}
	case config.MasterSourceZookeeper:
		return newZookeeper(b, cfg.ZookeeperServers, cfg.ZookeeperMesosPath)
	default:
		// Load rejects unknown sources; should one get here anyway, every
		// read fails and says why rather than the tree crash-looping.
		src := cfg.MasterSource
		return &poller{base: b, read: func(context.Context) ([]netip.Addr, error) {
			return nil, fmt.Errorf("unknown master_source %q", src)
		}}
	}
}

// positive returns d, or def (config's default) when d is zero or negative:
// Load refuses such durations, but a Config built another way must never
// turn a poll loop into a busy loop.
func positive(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// base is what every watcher shares: where to report, and the schedule.
type base struct {
	source  string
	out     chan<- msg.ToState
	lookup  Lookup
	log     zerolog.Logger
	clock   clock.Clock
	normal  time.Duration // poll interval after a good read
	fail    time.Duration // poll interval after a failed read
	timeout time.Duration // exhibitor HTTP timeout
	// goodAt is the clock's time of the last good read (unix ns, 0: none
	// yet), shared by the copies of base, for the masters-age metric.
	goodAt *atomic.Int64
}

// LastGoodRead returns when the masters were last read successfully (zero
// before the first good read). Every watcher New returns has it.
func (b *base) LastGoodRead() time.Time {
	if ns := b.goodAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (b *base) String() string { return "masters/" + b.source }

// report sends the outcome of one read and returns the interval until the
// next poll. last is the previous good result, kept to log changes at info
// and repeats at debug; it is updated on a good read.
func (b *base) report(ctx context.Context, ips []netip.Addr, err error, last *[]netip.Addr) time.Duration {
	if err == nil {
		ips = Normalize(ips)
		if len(ips) == 0 {
			err = fmt.Errorf("%s: read returned no masters", b.source)
		}
	}
	now := b.clock.Now()
	var m msg.ToState
	next := b.normal
	if err != nil {
		b.log.Warn().Err(err).Msg("masters read failed; keeping the last known masters")
		m = msg.ReadFailed{Source: b.source, Err: err, At: now}
		next = b.fail
	} else {
		ev := b.log.Debug()
		if !slices.Equal(ips, *last) {
			ev = b.log.Info()
		}
		ev.Strs("masters", addrStrings(ips)).Msg("masters read")
		*last = ips
		m = msg.Masters{Source: b.source, IPs: ips, At: now}
		b.goodAt.Store(now.UnixNano())
	}
	select {
	case b.out <- m:
	case <-ctx.Done():
	}
	return next
}

func addrStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// resolveAll turns hostnames (IP literals or names) into addresses through
// the injected Lookup. Any name that does not resolve fails the whole read:
// a partial list would silently drop a master.
func (b *base) resolveAll(ctx context.Context, hosts []string) ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			ips = append(ips, ip)
			continue
		}
		if b.lookup == nil {
			return nil, fmt.Errorf("cannot resolve master hostname %q: no resolver", h)
		}
		got, err := b.lookup(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("master hostname %q: %w", h, err)
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("master hostname %q resolved to no addresses", h)
		}
		ips = append(ips, got...)
	}
	return ips, nil
}

// poller is the exhibitor, exhibitor_uri and master_list watcher: read now,
// then again after the normal or the fail interval.
type poller struct {
	base
	read func(ctx context.Context) ([]netip.Addr, error)
}

// Serve polls until ctx ends. All state is local, so a restart by the
// supervisor starts clean and reads at once.
func (p *poller) Serve(ctx context.Context) error {
	var last []netip.Addr
	for {
		ips, err := p.read(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		next := p.report(ctx, ips, err, &last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.clock.After(next):
		}
	}
}
