// Package dnstest runs in-process upstream DNS servers on real loopback
// sockets (UDP and TCP on the same port) whose behaviour a test chooses per
// query: answer, answer slowly, never answer, refuse, or misbehave (wrong
// ID, wrong question, garbage, truncated). Everything a test needs to assert
// what an upstream saw is recorded.
package dnstest

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Reply is what the upstream does with one query.
type Reply struct {
	Msg   *dns.Msg      // the reply to pack (its ID and question are the query's unless set otherwise)
	Raw   []byte        // sent as is instead of Msg (garbage)
	Delay time.Duration // wait before replying
	Drop  bool          // never reply (silent)
	// FromOther sends the UDP reply from a different socket (a spoof from
	// another port).
	FromOther bool
}

// Handler decides the reply to one query. tcp says how it came.
type Handler func(q *dns.Msg, tcp bool) Reply

// Seen is one query the upstream received.
type Seen struct {
	Name   string
	Type   uint16
	ID     uint16
	TCP    bool
	From   netip.AddrPort
	Packet []byte
}

// Upstream is a running fake upstream.
type Upstream struct {
	Addr netip.AddrPort

	handler atomic.Pointer[Handler]
	mu      sync.Mutex
	seen    []Seen
	udp     *net.UDPConn
	tcp     *net.TCPListener
	other   *net.UDPConn
	wg      sync.WaitGroup
}

// Start runs an upstream on ip (port chosen by the kernel) until the test ends.
func Start(t testing.TB, ip string, h Handler) *Upstream {
	t.Helper()
	u, err := StartAt(netip.AddrPortFrom(netip.MustParseAddr(ip), 0), h)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(u.Close)
	return u
}

// StartAt runs an upstream on addr (port 0: any free port, the same for UDP and TCP).
func StartAt(addr netip.AddrPort, h Handler) (*Upstream, error) {
	var lastErr error
	for range 20 {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), port)))
		if err != nil {
			udp.Close()
			lastErr = err
			if addr.Port() != 0 {
				return nil, err
			}
			continue
		}
		other, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), 0)))
		if err != nil {
			udp.Close()
			tcp.Close()
			return nil, err
		}
		u := &Upstream{Addr: netip.AddrPortFrom(addr.Addr(), port), udp: udp, tcp: tcp, other: other}
		u.SetHandler(h)
		u.wg.Add(2)
		go u.serveUDP()
		go u.serveTCP()
		return u, nil
	}
	return nil, lastErr
}

// SetHandler changes the behaviour for the following queries.
func (u *Upstream) SetHandler(h Handler) { u.handler.Store(&h) }

// Seen returns the queries received so far.
func (u *Upstream) Seen() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.seen...)
}

// Count returns how many queries were received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// Close stops the upstream.
func (u *Upstream) Close() {
	u.udp.Close()
	u.tcp.Close()
	u.other.Close()
	u.wg.Wait()
}

func (u *Upstream) record(pkt []byte, tcp bool, from netip.AddrPort) (*dns.Msg, bool) {
	q := new(dns.Msg)
	err := q.Unpack(pkt)
	s := Seen{TCP: tcp, From: from, Packet: append([]byte(nil), pkt...)}
	if len(pkt) >= 2 {
		s.ID = binary.BigEndian.Uint16(pkt)
	}
	if err == nil && len(q.Question) > 0 {
		s.Name, s.Type = q.Question[0].Name, q.Question[0].Qtype
	}
	u.mu.Lock()
	u.seen = append(u.seen, s)
	u.mu.Unlock()
	return q, err == nil && len(q.Question) == 1
}

func (u *Upstream) build(q *dns.Msg, tcp bool) (Reply, []byte) {
	r := (*u.handler.Load())(q, tcp)
	if r.Drop {
		return r, nil
	}
	if r.Raw != nil {
		return r, r.Raw
	}
	if r.Msg == nil {
		return r, nil
	}
	b, err := r.Msg.Pack()
	if err != nil {
		return r, nil
	}
	return r, b
}

func (u *Upstream) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		q, ok := u.record(buf[:n], false, from)
		if !ok {
			continue
		}
		r, out := u.build(q, false)
		if out == nil {
			continue
		}
		send := func() {
			conn := u.udp
			if r.FromOther {
				conn = u.other
			}
			_, _ = conn.WriteToUDPAddrPort(out, from)
		}
		if r.Delay > 0 {
			time.AfterFunc(r.Delay, send)
		} else {
			send()
		}
	}
}

func (u *Upstream) serveTCP() {
	defer u.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := u.tcp.AcceptTCP()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			var wmu sync.Mutex
			for {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				pkt := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, pkt); err != nil {
					return
				}
				q, ok := u.record(pkt, true, c.RemoteAddr().(*net.TCPAddr).AddrPort())
				if !ok {
					continue
				}
				r, out := u.build(q, true)
				if out == nil {
					continue
				}
				go func() {
					time.Sleep(r.Delay)
					frame := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
					wmu.Lock()
					defer wmu.Unlock()
					_, _ = c.Write(append(frame, out...))
				}()
			}
		}()
	}
}

// Answer replies NOERROR with one A record (ip) for every A query, and an
// empty NOERROR for other types.
func Answer(ip string) Handler {
	a := net.ParseIP(ip)
	return func(q *dns.Msg, tcp bool) Reply {
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: a})
		}
		return Reply{Msg: m}
	}
}

// Rcode replies with an empty message carrying rcode (e.g. dns.RcodeRefused).
func Rcode(rcode int) Handler {
	return func(q *dns.Msg, tcp bool) Reply {
		m := new(dns.Msg)
		m.SetRcode(q, rcode)
		return Reply{Msg: m}
	}
}

// Silent never replies.
func Silent() Handler { return func(*dns.Msg, bool) Reply { return Reply{Drop: true} } }

// Slow wraps h with a delay.
func Slow(d time.Duration, h Handler) Handler {
	return func(q *dns.Msg, tcp bool) Reply {
		r := h(q, tcp)
		r.Delay = d
		return r
	}
}
