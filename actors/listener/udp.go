package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/forwarder"
)

// maxQuery is the largest client UDP query read; anything longer is cut
// and then fails to parse (real queries are a few hundred bytes at most).
const maxQuery = 4096

// drainWindow is how long a restarted listener reads its predecessor's
// socket for queries that were queued while no one was reading.
const drainWindow = 5 * time.Millisecond

// UDP is the UDP listener actor for one address.
//
// The value outlives restarts. When Serve ends (killed, or a read error)
// its socket is kept open, not closed: packets keep queueing in it, and the
// next Serve binds a new socket first (SO_REUSEPORT), then reads what queued
// in the old one and closes it. A crash of this actor therefore loses no
// query. Close releases the socket for good at shutdown.
type UDP struct {
	addr netip.AddrPort
	fwd  *forwarder.Forwarder
	log  zerolog.Logger

	// conn is the current or, between runs, the previous socket. Replies
	// are written through whatever it is when they are ready, so a query
	// that outlives a restart is still answered.
	conn atomic.Pointer[net.UDPConn]
	wg   sync.WaitGroup
}

// NewUDP returns the UDP listener actor for addr.
func NewUDP(addr netip.AddrPort, fwd *forwarder.Forwarder, log zerolog.Logger) *UDP {
	return &UDP{addr: addr, fwd: fwd, log: log.With().Str("listener", "udp").Stringer("addr", addr).Logger()}
}

func (l *UDP) String() string { return "udp-" + l.addr.Addr().String() }

// Serve implements suture.Service.
func (l *UDP) Serve(ctx context.Context) error {
	conn, err := listenUDP(ctx, l.addr)
	if err != nil {
		return fmt.Errorf("udp listen %s: %w", l.addr, err)
	}
	if old := l.conn.Swap(conn); old != nil {
		l.drain(old)
	}
	l.log.Debug().Msg("serving")

	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, maxQuery)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return fmt.Errorf("udp read %s: %w", l.addr, err)
		}
		l.dispatch(buf[:n], from)
	}
}

// dispatch starts the query's goroutine, unless handler_limit is reached.
func (l *UDP) dispatch(pkt []byte, from netip.AddrPort) {
	if !l.fwd.Begin() {
		return // shed: dropped, counted by Begin
	}
	q := append([]byte(nil), pkt...)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.fwd.End()
		if r := l.fwd.Handle(q, false); r != nil {
			_, _ = l.conn.Load().WriteToUDPAddrPort(r, from)
		}
	}()
}

// drain answers the queries that queued in the previous run's socket, then
// closes it. Replies go out of the new socket: same address, same port.
func (l *UDP) drain(old *net.UDPConn) {
	buf := make([]byte, maxQuery)
	_ = old.SetReadDeadline(time.Now().Add(drainWindow))
	n := 0
	for {
		size, from, err := old.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		n++
		l.dispatch(buf[:size], from)
	}
	_ = old.Close()
	if n > 0 {
		l.log.Info().Int("queries", n).Msg("answered queries queued during restart")
	}
}

// Close closes the socket and waits for in-flight queries to be answered.
// Call it once the tree has stopped.
func (l *UDP) Close() {
	l.wg.Wait()
	if c := l.conn.Load(); c != nil {
		_ = c.Close()
	}
}
