package forwarder

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/state"
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

// exchange is one attempt of race r at upstream u: it sends the query with
// a fresh ID and reads until a valid reply, the deadline, or (once the race
// is over) LoserGrace; i is u's index in the route. It scores the outcome for u's health (state.Attempt)
// and sends exactly one result to r.out, which has room for it.
func (f *Forwarder) exchange(r *goRace, i int, u *state.Upstream) {
	var a state.Attempt
	a.Start(u)
	network := "udp"
	if r.tcp {
		network = "tcp"
	}
	conn, err := f.Dial.Dial(network, u.Addr, r.deadline)
	if err != nil {
		a.Failed()
		r.out <- attemptResult{u: u, up: i}
		return
	}
	reply := f.exchangeOn(conn, r, &a)
	r.out <- attemptResult{u: u, up: i, reply: reply, timedOut: reply == nil && !time.Now().Before(r.deadline)}
	conn.Close() // after delivering: closing is not on the client's path
}

func (f *Forwarder) exchangeOn(conn Conn, r *goRace, a *state.Attempt) []byte {
	// The upstream gets the client's query byte for byte but for a fresh
	// random ID (RFC 5452), framed when it goes over TCP.
	id := f.newID()
	var wbuf []byte
	if r.tcp {
		wbuf = AppendFrame(make([]byte, 0, 2+len(r.q)), r.q)
		_ = conn.SetWriteDeadline(r.deadline) // a UDP write never waits
	} else {
		wbuf = append([]byte(nil), r.q...)
	}
	setID(wbuf[len(wbuf)-len(r.q):], id)
	if _, err := conn.Write(wbuf); err != nil {
		a.Failed()
		return nil
	}
	if t := f.Tap; t != nil {
		t.Message(dnstap.ForwarderQuery, wbuf[len(wbuf)-len(r.q):], a.Upstream().Addr, r.tcp)
	}
	question := r.q[headerLen:r.qEnd]
	_ = conn.SetReadDeadline(r.deadline)
	r.register(conn)

	sent := time.Now()
	stallTimer := time.AfterFunc(r.hedge, a.Stall)
	defer stallTimer.Stop()

	for {
		msg, err := r.read(conn)
		if err == errNotAReply {
			continue // an empty or oversized datagram: as if never received
		}
		if err != nil {
			switch {
			case !errors.Is(err, os.ErrDeadlineExceeded):
				a.Failed() // refused, reset, EOF, a broken TCP frame
			case r.isOver() && time.Now().Before(r.deadline):
				a.Abandon() // a loser we stopped waiting for
			default:
				a.TimedOut()
			}
			return nil
		}
		if validateReply(msg, id, question) != nil {
			// A message that is not the reply: a spoofed or stray UDP
			// packet, or a stray message on the TCP connection (RFC 7766
			// section 7 matches replies by ID and question). Skip it and
			// keep waiting; only a broken frame ends a TCP attempt.
			continue
		}
		if t := f.Tap; t != nil {
			t.Message(dnstap.ForwarderResponse, msg, a.Upstream().Addr, r.tcp)
		}
		a.Replied(isGoodRcode(rcode(msg)), time.Since(sent))
		return msg
	}
}

// read reads the next upstream message of an attempt: a datagram, or a
// frame on a TCP connection. A frame shorter than a DNS header breaks the
// stream (errFrameSize) like one over the limit: no DNS message is that
// short, so what follows cannot be trusted to be framed either.
func (r *goRace) read(conn Conn) ([]byte, error) {
	if !r.tcp {
		return readDatagram(conn, r.limits.UDPPayloadMax)
	}
	msg, err := ReadFrame(conn, r.limits.TCPMessageMax, nil)
	if err == nil && len(msg) < headerLen {
		return nil, errFrameSize
	}
	return msg, err
}
