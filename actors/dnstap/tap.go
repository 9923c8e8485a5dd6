// Package dnstap is the dnstap query log (the format of BIND, Unbound,
// Knot, CoreDNS and dnsdist): client and forwarder queries and responses,
// as protobuf frames in a Frame Streams file or to a collector's unix
// socket. It must never slow DNS down: the query path hands a copy of each
// message to a bounded queue without waiting (a full queue drops it, and
// counts the drop); the Tap actor, in the supervision tree, drains the
// queue and writes, reconnecting to a collector that went away.
package dnstap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

// Kind is what a logged message is.
type Kind uint8

// The message kinds Spartan logs.
const (
	ClientQuery       Kind = iota // a client's query, as received
	ClientResponse                // the answer sent to a client
	ForwarderQuery                // a query sent to an upstream
	ForwarderResponse             // an upstream's validated reply
	CachedResponse                // the answer sent to a client from the cache (fresh or stale)
)

// cacheExtra marks a CachedResponse: dnstap has no field for "answered
// from the cache", so, as the format leaves to the implementation, the
// frame's extra field says so (dnstap-read -y prints it).
var cacheExtra = []byte("cache")

var messageTypes = [...]dnstap.Message_Type{
	ClientQuery:       dnstap.Message_CLIENT_QUERY,
	ClientResponse:    dnstap.Message_CLIENT_RESPONSE,
	ForwarderQuery:    dnstap.Message_FORWARDER_QUERY,
	ForwarderResponse: dnstap.Message_FORWARDER_RESPONSE,
	CachedResponse:    dnstap.Message_CLIENT_RESPONSE,
}

// QueueSize bounds the messages waiting for the writer.
const QueueSize = 4096

const (
	writeTimeout   = 2 * time.Second // one write or handshake to a collector
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 10 * time.Second
	flushThreshold = 64 // frames buffered before a flush while the queue stays busy
)

type event struct {
	kind Kind
	tcp  bool
	peer netip.AddrPort // the client for Client*, the upstream for Forwarder*
	at   time.Time
	msg  []byte
}

// Tap is the query log: the queue the query path feeds and the actor that
// writes it. A nil *Tap is "dnstap off"; callers test for nil, so the
// query path pays one comparison when it is off.
type Tap struct {
	socket, file string
	version      []byte
	identity     []byte // the host name, as BIND logs it
	log          zerolog.Logger
	events       chan event

	// Sent counts messages written; Dropped those lost to a full queue or
	// an absent collector.
	Sent, Dropped atomic.Uint64

	out   *framestream.Writer // the file's writer survives actor restarts
	outFD io.Closer

	enc encoder // the writer goroutine's reused frame
}

// encoder is one frame, reused for every message so that encoding
// allocates nothing per message (the fields point into it).
type encoder struct {
	d      dnstap.Dnstap
	m      dnstap.Message
	dtype  dnstap.Dnstap_Type
	mtype  dnstap.Message_Type
	family dnstap.SocketFamily
	proto  dnstap.SocketProtocol
	port   uint32
	sec    uint64
	nsec   uint32
	ip     [16]byte
	buf    []byte
}

// New returns the tap writing to the unix socket or the file (exactly one
// is non-empty), or nil when both are empty.
func New(socket, file, version string, log zerolog.Logger) *Tap {
	if socket == "" && file == "" {
		return nil
	}
	host, _ := os.Hostname()
	return &Tap{socket: socket, file: file, version: []byte(version), identity: []byte(host), log: log,
		events: make(chan event, QueueSize)}
}

func (t *Tap) String() string { return "dnstap" }

// Message queues a copy of msg for the log, or counts a drop when the
// queue is full. It never blocks.
func (t *Tap) Message(kind Kind, msg []byte, peer netip.AddrPort, tcp bool) {
	e := event{kind: kind, tcp: tcp, peer: peer, at: time.Now(), msg: append([]byte(nil), msg...)}
	select {
	case t.events <- e:
	default:
		t.Dropped.Add(1)
	}
}

// Serve implements suture.Service: connect, write until the context ends,
// reconnect (with backoff) when the destination fails. While it is
// disconnected, queued messages are dropped and counted, so the queue
// never holds stale traffic.
func (t *Tap) Serve(ctx context.Context) error {
	backoff := minBackoff
	for {
		w, closer, err := t.connect()
		if err != nil {
			t.log.Warn().Err(err).Float64("retry_in_seconds", backoff.Seconds()).Msg("dnstap: cannot reach the destination")
			if err := t.dropFor(ctx, backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		err = t.write(ctx, w)
		if ctx.Err() != nil {
			if t.file == "" { // a collector: end the stream; a file stays open across restarts
				_ = w.Close()
				_ = closer.Close()
			} else {
				_ = w.Flush()
			}
			return ctx.Err()
		}
		t.log.Warn().Err(err).Msg("dnstap: write failed; reconnecting")
		_ = closer.Close()
		t.out, t.outFD = nil, nil
	}
}

// Close ends a file's stream (the STOP frame readers expect). The daemon
// calls it once the tree has stopped.
func (t *Tap) Close() error {
	if t == nil || t.out == nil {
		return nil
	}
	err := errors.Join(t.out.Close(), t.outFD.Close())
	t.out, t.outFD = nil, nil
	return err
}

func (t *Tap) connect() (*framestream.Writer, io.Closer, error) {
	if t.file != "" {
		if t.out != nil {
			return t.out, t.outFD, nil
		}
		f, err := os.OpenFile(t.file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("dnstap file: %w", err)
		}
		w, err := framestream.NewWriter(f, &framestream.WriterOptions{ContentTypes: [][]byte{dnstap.FSContentType}})
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("dnstap file %s: %w", t.file, err)
		}
		t.out, t.outFD = w, f
		return w, f, nil
	}
	c, err := net.DialTimeout("unix", t.socket, writeTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("dnstap socket: %w", err)
	}
	w, err := framestream.NewWriter(c, &framestream.WriterOptions{
		ContentTypes: [][]byte{dnstap.FSContentType}, Bidirectional: true, Timeout: writeTimeout,
	})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("dnstap socket %s: handshake: %w", t.socket, err)
	}
	t.log.Info().Str("socket", t.socket).Msg("dnstap: collector connected")
	return w, c, nil
}

// write drains the queue into w, flushing whenever the queue runs empty.
func (t *Tap) write(ctx context.Context, w *framestream.Writer) error {
	buffered := 0
	for {
		var e event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e = <-t.events:
		}
		frame, err := t.encode(e)
		if err != nil {
			t.Dropped.Add(1) // cannot happen for these fields
			continue
		}
		if _, err := w.WriteFrame(frame); err != nil {
			t.Dropped.Add(1)
			return err
		}
		t.Sent.Add(1)
		if buffered++; len(t.events) == 0 || buffered >= flushThreshold {
			if err := w.Flush(); err != nil {
				return err
			}
			buffered = 0
		}
	}
}

// dropFor empties the queue for d (counting drops), or until ctx ends.
func (t *Tap) dropFor(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case <-t.events:
			t.Dropped.Add(1)
		}
	}
}

// encode returns the frame of e, in a buffer reused by the next call.
func (t *Tap) encode(e event) ([]byte, error) {
	x := &t.enc
	x.m = dnstap.Message{}
	x.mtype, x.family, x.proto = messageTypes[e.kind], dnstap.SocketFamily_INET, dnstap.SocketProtocol_UDP
	ip := e.peer.Addr().Unmap()
	n := 4
	if ip.Is6() {
		x.family, n = dnstap.SocketFamily_INET6, 16
		x.ip = ip.As16()
	} else {
		a := ip.As4()
		copy(x.ip[:], a[:])
	}
	if e.tcp {
		x.proto = dnstap.SocketProtocol_TCP
	}
	x.m.Type, x.m.SocketFamily, x.m.SocketProtocol = &x.mtype, &x.family, &x.proto
	x.port, x.sec, x.nsec = uint32(e.peer.Port()), uint64(e.at.Unix()), uint32(e.at.Nanosecond())
	switch e.kind {
	case ClientQuery, ClientResponse, CachedResponse:
		x.m.QueryAddress, x.m.QueryPort = x.ip[:n], &x.port
	default:
		x.m.ResponseAddress, x.m.ResponsePort = x.ip[:n], &x.port
	}
	switch e.kind {
	case ClientQuery, ForwarderQuery:
		x.m.QueryMessage, x.m.QueryTimeSec, x.m.QueryTimeNsec = e.msg, &x.sec, &x.nsec
	default:
		x.m.ResponseMessage, x.m.ResponseTimeSec, x.m.ResponseTimeNsec = e.msg, &x.sec, &x.nsec
	}
	x.dtype = dnstap.Dnstap_MESSAGE
	x.d = dnstap.Dnstap{Type: &x.dtype, Identity: t.identity, Version: t.version, Message: &x.m}
	if e.kind == CachedResponse {
		x.d.Extra = cacheExtra
	}
	var err error
	x.buf, err = proto.MarshalOptions{}.MarshalAppend(x.buf[:0], &x.d)
	return x.buf, err
}
