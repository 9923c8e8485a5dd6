package forwarder

import (
	"encoding/binary"
	"errors"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spartan-dns/spartan/actors/config"
)

// Dialer opens the socket for one upstream query. A fresh socket per query
// gives each query a fresh kernel-chosen random source port (RFC 5452), and
// a connected UDP socket makes the kernel drop packets from any other
// address.
type Dialer interface {
	Dial(network string, addr netip.AddrPort, deadline time.Time) (Conn, error)
}

// Conn is what an upstream exchange needs of a socket.
type Conn interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

type netDialer struct{}

func (netDialer) Dial(network string, addr netip.AddrPort, deadline time.Time) (Conn, error) {
	if network == "udp" {
		return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	}
	d := net.Dialer{Deadline: deadline}
	return d.Dial("tcp", addr.String())
}

// result is one upstream's answer to the race: a validated reply (owned by
// the receiver) or the error that ended the attempt.
type result struct {
	u     *config.Upstream
	reply []byte
	err   error
}

// raceState is shared by a race and its workers. When the race ends, the
// losers' sockets get a read deadline LoserGrace away: they are still read
// for health accounting, but not for the full upstream_timeout.
type raceState struct {
	mu    sync.Mutex
	over  bool
	grace time.Duration
	conns [maxAttempts]Conn
	n     int
}

func (s *raceState) register(c Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		_ = c.SetReadDeadline(time.Now().Add(s.grace))
		return
	}
	s.conns[s.n] = c
	s.n++
}

func (s *raceState) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		return
	}
	s.over = true
	d := time.Now().Add(s.grace)
	for _, c := range s.conns[:s.n] {
		_ = c.SetReadDeadline(d) // harmless on a closed conn
	}
}

func (s *raceState) isOver() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.over
}

var errTimeout = errors.New("upstream timeout")

// Stall bookkeeping: an attempt with no reply by the hedge delay counts a
// stall; a reply after that takes it back (a loser that was merely slow is
// not a failure), a timeout leaves it standing.
const (
	stallNone    = iota
	stallCounted // the stall timer fired first
	stallAnswered
)

// exchange sends q to u with a fresh ID and reads until a valid reply, the
// deadline, or (once the race is over) LoserGrace. It records the outcome in
// u's counters and sends exactly one result to out, which has room for it.
func (f *Forwarder) exchange(st *raceState, u *config.Upstream, q []byte, qEnd int, tcp bool, hedge time.Duration, deadline time.Time, limits config.LimitsConfig, out chan<- result) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	conn, err := f.Dial.Dial(network, u.Addr, deadline)
	if err != nil {
		u.Failures.Add(1)
		out <- result{u: u, err: err}
		return
	}
	reply, err := f.exchangeOn(conn, st, u, q, qEnd, tcp, hedge, deadline, limits)
	out <- result{u: u, reply: reply, err: err}
	conn.Close() // after delivering: closing is not on the client's path
}

func (f *Forwarder) exchangeOn(conn Conn, st *raceState, u *config.Upstream, q []byte, qEnd int, tcp bool, hedge time.Duration, deadline time.Time, limits config.LimitsConfig) ([]byte, error) {
	var err error
	// The upstream gets the client's query byte for byte but for a fresh
	// random ID (RFC 5452), framed when it goes over TCP.
	id := uint16(f.Rand(1 << 16))
	wbuf := make([]byte, 0, 2+len(q))
	if tcp {
		wbuf = binary.BigEndian.AppendUint16(wbuf, uint16(len(q)))
		_ = conn.SetWriteDeadline(deadline) // a UDP write never waits
	}
	wbuf = append(wbuf, q...)
	setID(wbuf[len(wbuf)-len(q):], id)
	if _, err := conn.Write(wbuf); err != nil {
		u.Failures.Add(1)
		return nil, err
	}
	if t := f.Tap; t != nil {
		t.Message(dnstap.ForwarderQuery, wbuf[len(wbuf)-len(q):], u.Addr, tcp)
	}
	question := q[headerLen:qEnd]
	_ = conn.SetReadDeadline(deadline)
	st.register(conn)

	var stall atomic.Int32
	sent := time.Now()
	stallTimer := time.AfterFunc(hedge, func() {
		if stall.CompareAndSwap(stallNone, stallCounted) {
			u.Stalls.Add(1)
		}
	})
	defer stallTimer.Stop()

	for {
		var msg []byte
		if tcp {
			msg, err = readFrame(conn, limits.TCPMessageMax)
		} else {
			msg, err = readDatagram(conn, limits.UDPPayloadMax)
			if err == errNotAReply {
				continue // oversized or empty: ignore it as if never received
			}
		}
		if err != nil {
			timedOut := errors.Is(err, os.ErrDeadlineExceeded)
			switch {
			case timedOut && st.isOver() && time.Now().Before(deadline):
				// A loser we stopped waiting for: its stall (if any) stands.
			case stall.CompareAndSwap(stallNone, stallAnswered) || !timedOut:
				u.Failures.Add(1) // refused, reset, EOF, or a timeout before any stall
			}
			if timedOut {
				return nil, errTimeout
			}
			return nil, err
		}
		if err := validateReply(msg, id, question); err != nil {
			if tcp {
				u.Failures.Add(1) // a TCP stream that lies is done
				return nil, err
			}
			continue // spoofed or stray UDP packet: ignore, keep waiting
		}
		if t := f.Tap; t != nil {
			t.Message(dnstap.ForwarderResponse, msg, u.Addr, tcp)
		}
		if !stall.CompareAndSwap(stallNone, stallAnswered) {
			u.LateReplies.Add(1) // it answered after all: take the stall back
		}
		if isGoodRcode(rcode(msg)) {
			u.Successes.Add(1)
			u.Latency.Observe(time.Since(sent))
		} else {
			u.Failures.Add(1)
		}
		return msg, nil
	}
}

// readFrame reads one length-prefixed DNS message (RFC 1035 4.2.2).
func readFrame(r io.Reader, max int) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < headerLen || n > max {
		return nil, errFrameSize
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

var errFrameSize = errors.New("TCP frame length out of range")
