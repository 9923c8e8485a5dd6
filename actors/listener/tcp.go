package listener

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// TCP is the TCP listener actor for one address. Each connection is served
// per RFC 7766: queries are read as they arrive (pipelining), each is
// answered by its own goroutine as soon as it completes (out of order), and
// a connection with nothing in flight is closed after the idle timeout.
//
// The connections belong to the run of Serve that accepted them: when Serve
// ends, they are closed, so a restarted listener leaks nothing.
type TCP struct {
	addr   netip.AddrPort
	fwd    *forwarder.Forwarder
	limits config.LimitsConfig
	log    zerolog.Logger

	conns atomic.Int64 // open client connections, for limits.TCPConnections
	// Refused counts connections closed at once because of tcp_connections.
	Refused atomic.Uint64
}

// NewTCP returns the TCP listener actor for addr.
func NewTCP(addr netip.AddrPort, fwd *forwarder.Forwarder, limits config.LimitsConfig, log zerolog.Logger) *TCP {
	return &TCP{addr: addr, fwd: fwd, limits: limits, log: log.With().Str("listener", "tcp").Stringer("addr", addr).Logger()}
}

func (l *TCP) String() string { return "tcp-" + l.addr.Addr().String() }

// Serve implements suture.Service.
func (l *TCP) Serve(ctx context.Context) error {
	ln, err := listenTCP(ctx, l.addr)
	if err != nil {
		return fmt.Errorf("tcp listen %s: %w", l.addr, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	}()
	context.AfterFunc(runCtx, func() { _ = ln.Close() })

	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tcp accept %s: %w", l.addr, err)
		}
		if l.conns.Add(1) > int64(l.limits.TCPConnections) {
			l.conns.Add(-1)
			l.Refused.Add(1)
			_ = c.SetLinger(0)
			_ = c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.conns.Add(-1)
			l.serveConn(runCtx, c)
		}()
	}
}

// serveConn reads framed queries until the client closes, misbehaves, goes
// idle, or the run ends. Writes from the query goroutines are serialised.
func (l *TCP) serveConn(ctx context.Context, c *net.TCPConn) {
	var (
		wmu      sync.Mutex
		inflight sync.WaitGroup
		pending  atomic.Int64
		slots    = make(chan struct{}, l.limits.TCPPipeline)
	)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer func() {
		stop()
		// Let the queries already read finish (bounded by upstream_timeout),
		// then close.
		inflight.Wait()
		_ = c.Close()
	}()

	var lenBuf [2]byte
	for {
		// Wait for the first byte of the next frame up to the idle timeout;
		// while queries are in flight the connection is not idle.
		_ = c.SetReadDeadline(time.Now().Add(l.limits.TCPIdleTimeout))
		if _, err := io.ReadFull(c, lenBuf[:1]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && pending.Load() > 0 {
				continue
			}
			return
		}
		// The rest of the frame must follow promptly: a client that starts
		// a frame and stalls (slowloris) is cut off.
		_ = c.SetReadDeadline(time.Now().Add(l.limits.TCPReadTimeout))
		if _, err := io.ReadFull(c, lenBuf[1:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n == 0 || n > l.limits.TCPMessageMax {
			return // a frame no DNS query can be: the stream is unusable
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		if len(q) < 12 || q[2]&0x80 != 0 {
			continue // too short or a response: dropped, never answered
		}
		// Pipelining limit: stop reading (back-pressure) until a slot frees.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !l.fwd.Begin() {
			return // handler_limit: shed by closing the connection (counted by Begin)
		}
		inflight.Add(1)
		pending.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			defer pending.Add(-1)
			defer l.fwd.End()
			r := l.fwd.Handle(q, true)
			if r == nil {
				return
			}
			frame := make([]byte, 2+len(r))
			binary.BigEndian.PutUint16(frame, uint16(len(r)))
			copy(frame[2:], r)
			wmu.Lock()
			defer wmu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(l.limits.TCPReadTimeout))
			_, _ = c.Write(frame)
		}()
	}
}
