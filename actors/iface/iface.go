// Package iface holds the interface actor: it keeps a link named
// interface.name up and carrying every bind IP as a host route (/32, /128),
// so the listeners have addresses to bind and clients have something to put
// in resolv.conf.
//
// It prefers a dummy link. Kernels built without the dummy driver reject
// that kind ("Unknown device type"); there an ifb link, which also has no
// carrier of its own and never forwards anything, takes its place, and the
// log says which kind was created.
//
// The actor only ever adds: it creates its own link when missing, sets it up
// and adds missing addresses. It never deletes links or addresses, so an
// operator's extra addresses on the link and every other link are safe.
package iface

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/thejerf/suture/v4"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spartan-dns/spartan/actors/config"
)

// DefaultReconcileInterval bounds how long a change the actor missed (a lost
// netlink event, an overflowed socket buffer) goes unrepaired. The spec asks
// for repair within 1 s.
const DefaultReconcileInterval = 500 * time.Millisecond

// Link kinds the actor creates.
const (
	KindDummy = "dummy"
	KindIfb   = "ifb"
)

// Actor is the interface actor. The value survives suture restarts, and so
// does what it learned (the kind the kernel supports).
type Actor struct {
	name     string
	ips      []netip.Addr
	log      zerolog.Logger
	ns       vnetns.NsHandle
	interval time.Duration

	kind       atomic.Value // string: the kind of the link in use
	noDummy    atomic.Bool  // the kernel rejected the dummy kind once
	mu         sync.Mutex
	lastErr    string // last reconcile error logged, to log each distinct one once
	reconciles atomic.Int64
}

// Option adjusts an Actor.
type Option func(*Actor)

// WithNetns makes the actor work in the namespace ns instead of the
// process's own (its netlink sockets are opened there). Tests use it; the
// daemon never needs it.
func WithNetns(ns vnetns.NsHandle) Option { return func(a *Actor) { a.ns = ns } }

// WithReconcileInterval replaces DefaultReconcileInterval.
func WithReconcileInterval(d time.Duration) Option { return func(a *Actor) { a.interval = d } }

// New returns the interface actor, or nil when cfg.Manage is false (the
// caller then leaves it out of the tree). Without WithNetns the actor works
// in the process's network namespace and never calls setns(2), which needs
// CAP_SYS_ADMIN and which the systemd unit's RestrictNamespaces= forbids.
func New(cfg config.InterfaceConfig, ips []netip.Addr, log zerolog.Logger, opts ...Option) suture.Service {
	a := newActor(cfg, ips, log, opts...)
	if a == nil {
		// A typed nil *Actor in the interface would not compare equal to nil.
		return nil
	}
	return a
}

func newActor(cfg config.InterfaceConfig, ips []netip.Addr, log zerolog.Logger, opts ...Option) *Actor {
	if !cfg.Manage {
		return nil
	}
	a := &Actor{
		name:     cfg.Name,
		ips:      append([]netip.Addr(nil), ips...),
		log:      log.With().Str("link", cfg.Name).Logger(),
		ns:       vnetns.None(),
		interval: DefaultReconcileInterval,
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Kind is "dummy" or "ifb" once the actor has created or found its link,
// "" before. A link found already present reports its own kind.
func (a *Actor) Kind() string {
	k, _ := a.kind.Load().(string)
	return k
}

// Reconciles counts completed reconcile passes (for tests and debugging).
func (a *Actor) Reconciles() int64 { return a.reconciles.Load() }

func (a *Actor) String() string { return "interface " + a.name }

// Serve keeps the link in shape until ctx is cancelled. It reconciles at
// start, on every netlink event about its link or the link's addresses, and
// on a timer as a backstop for lost events.
func (a *Actor) Serve(ctx context.Context) error {
	h, err := netlink.NewHandleAt(a.ns)
	if err != nil {
		return fmt.Errorf("interface %s: netlink handle: %w", a.name, err)
	}
	defer h.Close()

	done := make(chan struct{})
	linkCh := make(chan netlink.LinkUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	ns := a.ns
	subErr := func(err error) { a.log.Debug().Err(err).Msg("netlink subscription") }
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: &ns, ErrorCallback: subErr}); err != nil {
		close(done)
		return fmt.Errorf("interface %s: subscribe to links: %w", a.name, err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: subErr}); err != nil {
		close(done)
		drain(linkCh, nil)
		return fmt.Errorf("interface %s: subscribe to addresses: %w", a.name, err)
	}
	defer func() {
		// Closing done closes the sockets; the library's reader goroutines
		// then close the channels, but only once any update they are
		// blocked sending has been taken, so drain until closed.
		close(done)
		drain(linkCh, addrCh)
	}()

	ticker := time.NewTicker(a.interval)
	defer ticker.Stop()

	index := a.reconcile(h)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-linkCh:
			if !ok {
				return fmt.Errorf("interface %s: link subscription closed", a.name)
			}
			if u.Attrs().Name == a.name || (index != 0 && int(u.Index) == index) {
				index = a.reconcile(h)
			}
		case u, ok := <-addrCh:
			if !ok {
				return fmt.Errorf("interface %s: address subscription closed", a.name)
			}
			if !u.NewAddr && (index == 0 || u.LinkIndex == index) {
				index = a.reconcile(h)
			}
		case <-ticker.C:
			index = a.reconcile(h)
		}
	}
}

// drain empties the channels until both are closed, in the background so
// Serve returns at once.
func drain(link chan netlink.LinkUpdate, addr chan netlink.AddrUpdate) {
	go func() {
		for link != nil || addr != nil {
			select {
			case _, ok := <-link:
				if !ok {
					link = nil
				}
			case _, ok := <-addr:
				if !ok {
					addr = nil
				}
			}
		}
	}()
}

// reconcile makes one pass and returns the link's index (0 when it could
// not be ensured). Errors are logged once per distinct message and retried
// by the next event or tick rather than failing the actor: a restart would
// only retry the same thing later.
func (a *Actor) reconcile(h *netlink.Handle) int {
	index, err := a.ensure(h)
	a.reconciles.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if msg := err.Error(); msg != a.lastErr {
			a.lastErr = msg
			a.log.Error().Err(err).Msg("cannot keep the interface in shape; retrying")
		}
		return index
	}
	if a.lastErr != "" {
		a.lastErr = ""
		a.log.Info().Msg("interface back in shape")
	}
	return index
}

func (a *Actor) ensure(h *netlink.Handle) (int, error) {
	link, err := h.LinkByName(a.name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if link, err = a.create(h); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, fmt.Errorf("look up link %s: %w", a.name, err)
	default:
		if a.Kind() == "" {
			a.kind.Store(link.Type())
			if t := link.Type(); t != KindDummy && t != KindIfb {
				a.log.Warn().Str("kind", t).Msg("link exists with an unexpected kind; using it as it is")
			}
		}
	}
	attrs := link.Attrs()
	if attrs.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return attrs.Index, fmt.Errorf("set link %s up: %w", a.name, err)
		}
		a.log.Info().Msg("link set up")
	}

	have := map[netip.Addr]bool{}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return attrs.Index, fmt.Errorf("list addresses of %s: %w", a.name, err)
	}
	for _, ad := range list {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok {
			ones, bits := ad.Mask.Size()
			if ones == bits {
				have[ip.Unmap()] = true
			}
		}
	}
	var errs []error
	for _, ip := range a.ips {
		if have[ip] {
			continue
		}
		bits := ip.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if ip.Is6() {
			// Duplicate address detection would hold the address
			// "tentative", unbindable, for a second or more.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", addr.IPNet, a.name, err))
			continue
		}
		a.log.Info().Str("ip", ip.String()).Msg("address added")
	}
	return attrs.Index, errors.Join(errs...)
}

// create adds the link: dummy unless the kernel has shown it lacks the
// driver, else ifb.
func (a *Actor) create(h *netlink.Handle) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = a.name
	var dummyErr error
	if !a.noDummy.Load() {
		dummyErr = h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if dummyErr == nil || errors.Is(dummyErr, unix.EEXIST) {
			return a.created(h, KindDummy, nil)
		}
		if !unsupportedKind(dummyErr) {
			return nil, fmt.Errorf("create dummy link %s: %w", a.name, dummyErr)
		}
		a.noDummy.Store(true)
	}
	if err := h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create link %s: dummy unsupported (%v), ifb: %w", a.name, dummyErr, err)
	}
	return a.created(h, KindIfb, dummyErr)
}

func (a *Actor) created(h *netlink.Handle, kind string, dummyErr error) (netlink.Link, error) {
	link, err := h.LinkByName(a.name)
	if err != nil {
		return nil, fmt.Errorf("look up link %s after creating it: %w", a.name, err)
	}
	// Someone may have raced us to the name with another kind; report
	// what is really there.
	kind = link.Type()
	a.kind.Store(kind)
	ev := a.log.Info().Str("kind", kind)
	if kind == KindIfb {
		ev = ev.AnErr("dummy_error", dummyErr).Str("why", "the kernel has no dummy driver; using ifb instead")
	}
	ev.Msg("link created")
	return link, nil
}

// unsupportedKind reports whether a link-add error means the kernel does not
// know the link kind (no driver built in or loadable): rtnetlink answers
// EOPNOTSUPP, which ip(8) prints as "Unknown device type". Other errors
// (EPERM, a bad name) would fail for ifb too and must not be remembered as
// "no dummy driver".
func unsupportedKind(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV)
}
