package listener

import (
	"context"
	"errors"
	"fmt"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
)

// drainWindow is how long a restarted TCP listener accepts connections
// that queued in its predecessor's socket.
const drainWindow = 5 * time.Millisecond

// TCP is the TCP listener actor for one address. Each connection is served
// per RFC 7766: queries are read as they arrive (pipelining), each is
// answered by its own goroutine as soon as it completes (out of order), and
// a connection with nothing in flight is closed after the idle timeout.
//
// The connections belong to the run of Serve that accepted them: when the
// run ends (killed, or shutdown), they stop reading, the queries already
// read are answered, and they are closed before Serve returns, so a
// restarted listener leaks nothing and loses no query it had accepted.
type TCP struct {
	addr   netip.AddrPort
	fwd    *forwarder.Forwarder
	limits config.LimitsConfig
	log    zerolog.Logger

	conns atomic.Int64 // open client connections, for limits.TCPConnections
	// prev is the listening socket of the last run, left open when the run
	// was cancelled so that connections queue in it until the next run.
	prev atomic.Pointer[net.TCPListener]
	base *os.File // inherited listening socket (Inherit); nil: bind our own
	// Refused counts connections closed at once because of tcp_connections.
	Refused atomic.Uint64
	// UnreadLimit bounds the reply bytes a client may leave unread (sent
	// but not yet acknowledged by its TCP) before it is cut off.
	UnreadLimit int
	cuts        [numCuts]atomic.Uint64 // connections cut off, by reason (tcpcut.go)
}

// Open returns the client connections open now.
func (l *TCP) Open() int64 { return l.conns.Load() }

// NewTCP returns the TCP listener actor for addr.
func NewTCP(addr netip.AddrPort, fwd *forwarder.Forwarder, limits config.LimitsConfig, log zerolog.Logger) *TCP {
	return &TCP{addr: addr, fwd: fwd, limits: limits, UnreadLimit: defaultUnreadLimit,
		log: log.With().Str("listener", "tcp").Stringer("addr", addr).Logger()}
}

func (l *TCP) String() string { return "tcp-" + l.addr.Addr().String() }

// endGrace is how long a connection of a run that ended still reads, for
// queries that were already on their way.
const endGrace = 50 * time.Millisecond

// Serve implements suture.Service.
//
// Like the UDP listener, a run that ends because its context was cancelled
// (killed, or the tree stopping) leaves its listening socket open: clients
// that connect meanwhile wait in its accept queue. The next run binds its
// own socket first (SO_REUSEPORT), then accepts what queued in the old one
// and closes it, so a restart refuses no connection. Close releases the
// socket for good.
func (l *TCP) Serve(ctx context.Context) error {
	ln, err := l.listen(ctx)
	if err != nil {
		return fmt.Errorf("tcp listen %s: %w", l.addr, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	keep := false
	defer func() {
		cancel()
		if keep {
			l.prev.Store(ln)
		} else {
			_ = ln.Close()
		}
		wg.Wait()
	}()
	// Wake Accept without closing the socket.
	context.AfterFunc(runCtx, func() { _ = ln.SetDeadline(time.Now()) })

	if old := l.prev.Swap(nil); old != nil {
		_ = old.SetDeadline(time.Now().Add(drainWindow))
		n := 0
		for {
			c, err := old.AcceptTCP()
			if err != nil {
				break
			}
			n++
			l.serve(runCtx, &wg, c)
		}
		_ = old.Close()
		if n > 0 {
			l.log.Info().Int("connections", n).Msg("served connections queued during restart")
		}
	}

	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				keep = l.base == nil // an inherited socket outlives the run anyway
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tcp accept %s: %w", l.addr, err)
		}
		l.serve(runCtx, &wg, c)
	}
}

// serve starts serving one accepted connection under the run's context,
// unless limits.tcp_connections is reached.
func (l *TCP) serve(ctx context.Context, wg *sync.WaitGroup, c *net.TCPConn) {
	if l.conns.Add(1) > int64(l.limits.TCPConnections) {
		l.conns.Add(-1)
		l.Refused.Add(1)
		_ = c.SetLinger(0)
		_ = c.Close()
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.serveConn(ctx, c, func() { l.conns.Add(-1) })
	}()
}

// Close closes the listening socket a cancelled run left open. Call it once
// the tree has stopped.
func (l *TCP) Close() {
	if ln := l.prev.Swap(nil); ln != nil {
		_ = ln.Close()
	}
}

// serveConn reads framed queries until the client closes, misbehaves, goes
// idle, or the run ends. Writes from the query goroutines are serialised.
// release frees the connection's tcp_connections slot; it is called just
// before the final close, so that a client which sees the connection end
// can count on the slot being free for its next one.
func (l *TCP) serveConn(ctx context.Context, c *net.TCPConn, release func()) {
	var (
		wmu      sync.Mutex
		inflight sync.WaitGroup
		pending  atomic.Int64
		slots    = make(chan struct{}, l.limits.TCPPipeline)
		client   netip.AddrPort // for the dnstap log
	)
	if l.fwd.Tap != nil {
		client = c.RemoteAddr().(*net.TCPAddr).AddrPort()
	}
	// When the run ends, the connection goes on reading for endGrace only:
	// a query the client sent just before (still in the socket buffer) is
	// answered, not reset. Then it stops reading (not closing: the queries
	// already read still get their replies). dlMu orders the deadlines set
	// by the loop and by the cancel, so a cancel is never overridden.
	var (
		dlMu  sync.Mutex
		endBy time.Time // zero while the run is live
	)
	setDeadline := func(d time.Duration) {
		dlMu.Lock()
		defer dlMu.Unlock()
		dl := time.Now().Add(d)
		if !endBy.IsZero() && endBy.Before(dl) {
			dl = endBy
		}
		_ = c.SetReadDeadline(dl)
	}
	ending := func() bool {
		dlMu.Lock()
		defer dlMu.Unlock()
		return !endBy.IsZero()
	}
	stop := context.AfterFunc(ctx, func() {
		dlMu.Lock()
		defer dlMu.Unlock()
		endBy = time.Now().Add(endGrace)
		_ = c.SetReadDeadline(endBy)
	})
	defer func() {
		stop()
		// Let the queries already read finish (bounded by upstream_timeout),
		// then close.
		inflight.Wait()
		release()
		_ = c.Close()
	}()

	for {
		// Wait for the first byte of the next frame up to the idle timeout;
		// while queries are in flight the connection is not idle. The rest
		// of the frame must follow promptly: a client that starts a frame
		// and stalls (slowloris) is cut off.
		setDeadline(l.limits.TCPIdleTimeout)
		begun := false
		q, err := forwarder.ReadFrame(c, l.limits.TCPMessageMax, func() {
			begun = true
			setDeadline(l.limits.TCPReadTimeout)
		})
		if err != nil {
			if !begun && errors.Is(err, os.ErrDeadlineExceeded) && pending.Load() > 0 && !ending() {
				continue
			}
			return // closed, idle, slow, or a frame no DNS query can be: the stream is unusable
		}
		bad := !forwarder.WellFormed(q)
		if l.fwd.Drops(q) && !bad {
			continue // a response: dropped (counted), never answered
		}
		if bad {
			// Not DNS, or out of step with its own framing: nothing after
			// this can be trusted. The replies already due are written
			// (the deferred wait), then the connection closes.
			l.cut(cutGarbage)
			return
		}
		// Pipelining limit: stop reading (back-pressure) until a slot frees.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		snap := l.fwd.Begin()
		if snap == nil {
			return // handler_limit: shed by closing the connection (counted by Begin)
		}
		inflight.Add(1)
		pending.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			defer pending.Add(-1)
			defer l.fwd.End()
			if t := l.fwd.Tap; t != nil {
				t.Message(dnstap.ClientQuery, q, client, true)
			}
			r, cached := l.fwd.AnswerFrom(snap, q, true)
			if r == nil {
				return
			}
			if t := l.fwd.Tap; t != nil {
				kind := dnstap.ClientResponse
				if cached {
					kind = dnstap.CachedResponse
				}
				t.Message(kind, r, client, true)
			}
			frame := forwarder.AppendFrame(make([]byte, 0, 2+len(r)), r)
			wmu.Lock()
			defer wmu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(l.limits.TCPReadTimeout))
			if _, err := c.Write(frame); err != nil {
				// A client that does not read its answers (or a half-written
				// frame that broke the stream) loses the connection: it must
				// not hold a slot of tcp_connections while its queries pile up.
				if errors.Is(err, os.ErrDeadlineExceeded) {
					l.cut(cutBlocked)
				}
				_ = c.Close()
				return
			}
			if l.unreadOver(c) {
				l.cut(cutUnread)
				_ = c.Close()
			}
		}()
	}
}
