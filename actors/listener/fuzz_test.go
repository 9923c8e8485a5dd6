package listener_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/listener"
	"github.com/spartan-dns/spartan/actors/state"
)

// Fuzz targets for the listeners: whatever a client sends, the listener
// keeps serving, and everything it sends back is DNS. The forwarder behind
// them has no upstream (names outside the local zones get SERVFAIL), so no
// packet leaves 127.0.0.0/8. Seeds live in testdata/fuzz/<target>/.

// fzLimits are small so that a client that stalls or goes quiet costs an
// iteration milliseconds, not the default seconds.
func fzLimits() config.LimitsConfig {
	l := config.Default().Limits
	l.TCPReadTimeout = 50 * time.Millisecond
	l.TCPIdleTimeout = 100 * time.Millisecond
	l.TCPPipeline = 8
	l.TCPConnections = 64
	return l
}

func fzForwarder() *forwarder.Forwarder {
	cfg := config.Default() // no upstream_resolvers, no forward_zones, no masters
	cfg.Limits = fzLimits()
	return forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())
}

// fzAddr returns a free port on a random 127/8 address. Fuzzing runs one
// listener per worker process, all with SO_REUSEPORT: a random address keeps
// them (and other tests) from sharing a port.
func fzAddr(f testing.TB, network string) netip.AddrPort {
	f.Helper()
	ip := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(250)), byte(rand.IntN(256)), byte(1 + rand.IntN(250))})
	var ap netip.AddrPort
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			f.Fatal(err)
		}
		ap = ln.Addr().(*net.TCPAddr).AddrPort()
		ln.Close()
	default:
		c, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			f.Fatal(err)
		}
		ap = c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
	}
	return ap
}

// fzServe runs s until the fuzz target ends, once ready answers. The
// function it returns fails the test if Serve has returned since: a
// listener that some input stops is the bug under test.
func fzServe(f testing.TB, s interface {
	Serve(context.Context) error
	Close()
}, ready func() error) (alive func(t *testing.T)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	f.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			f.Error("listener did not stop")
		}
		s.Close()
	})
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			f.Fatalf("listener stopped at start: %v", err)
		default:
		}
		err := ready()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			f.Fatalf("listener not ready: %v", err)
		}
	}
	return func(t *testing.T) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("listener stopped: %v", err)
		default:
		}
	}
}

// fzAskTCP asks ready.spartan on a new connection.
func fzAskTCP(addr netip.AddrPort) error {
	id := uint16(rand.IntN(1 << 16))
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		return fmt.Errorf("listener gone: %w", err)
	}
	defer c.Close()
	q := fzReadyQuery(id)
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(append(frame, q...)); err != nil {
		return fmt.Errorf("write ready.spartan: %w", err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return fmt.Errorf("ready.spartan not answered: %w", err)
	}
	reply := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, reply); err != nil {
		return fmt.Errorf("ready.spartan reply cut: %w", err)
	}
	return fzCheckReady(reply, id)
}

// fzAskUDP asks ready.spartan from a new socket.
func fzAskUDP(addr netip.AddrPort) error {
	id := uint16(rand.IntN(1 << 16))
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(fzReadyQuery(id)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("ready.spartan not answered: %w", err)
	}
	return fzCheckReady(buf[:n], id)
}

func fzReadyQuery(id uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion("ready.spartan.", dns.TypeA)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// fzCheckReady checks that b is the answer to fzReadyQuery(id).
func fzCheckReady(b []byte, id uint16) error {
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		return fmt.Errorf("ready.spartan reply does not parse: %w", err)
	}
	if m.Id != id || !m.Response || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		return fmt.Errorf("bad ready.spartan reply: %v", &m)
	}
	if a, ok := m.Answer[0].(*dns.A); !ok || !a.A.Equal(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("bad ready.spartan answer: %v", m.Answer[0])
	}
	return nil
}

// fzFrames splits a client stream the way the listener must: the complete
// frames a reply may answer (at least a header, QR clear) up to the first
// frame the listener must give up on (length 0 or over the limit), by ID.
func fzFrames(stream []byte, max int) map[uint16]int {
	ids := map[uint16]int{}
	for len(stream) >= 2 {
		n := int(binary.BigEndian.Uint16(stream))
		if n == 0 || n > max || len(stream) < 2+n {
			break
		}
		q := stream[2 : 2+n]
		if !forwarder.WellFormed(q) {
			break // the listener stops reading at a frame that is not DNS
		}
		if q[2]&0x80 == 0 {
			ids[binary.BigEndian.Uint16(q)]++
		}
		stream = stream[2+n:]
	}
	return ids
}

// FuzzTCPFraming writes arbitrary bytes as a client's TCP stream (closing
// its sending side, or going quiet, per halfClose) and reads everything the
// listener sends back. Each reply must be a complete frame holding a DNS
// response to one of the complete queries sent, and the listener must go on
// serving new connections.
func FuzzTCPFraming(f *testing.F) {
	fwd := fzForwarder()
	limits := fzLimits()
	addr := fzAddr(f, "tcp")
	tcp := listener.NewTCP(addr, fwd, limits, zerolog.Nop())
	alive := fzServe(f, tcp, func() error { return fzAskTCP(addr) })

	f.Fuzz(func(t *testing.T, stream []byte, halfClose bool) {
		if len(stream) > 1<<16 {
			return
		}
		// exchange returns an error for queries left unanswered, and fails the
		// test for anything else.
		exchange := func() error {
			refused := tcp.Refused.Load()
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err != nil {
				t.Fatalf("listener gone: %v", err)
			}
			defer c.Close()
			// Read while writing: a client that does not read its answers is cut
			// off, which is not what is under test here.
			type readResult struct {
				data []byte
				err  error
			}
			got := make(chan readResult, 1)
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				data, err := io.ReadAll(c)
				got <- readResult{data, err}
			}()
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(stream); err != nil && !fzReset(err) {
				t.Fatalf("write: %v", err)
			}
			if halfClose {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			r := <-got
			// The listener closes with unread input (after a bad frame) by a
			// reset; a clean end or a reset are both fine, the read timing out is
			// not: then the listener kept a connection it should have closed.
			if r.err != nil && !fzReset(r.err) {
				t.Fatalf("reading replies: %v (after %d bytes)", r.err, len(r.data))
			}
			want := fzFrames(stream, limits.TCPMessageMax)
			for rest := r.data; len(rest) > 0; {
				if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest)) {
					if r.err != nil {
						break // cut by the reset; what came before was checked
					}
					t.Fatalf("incomplete reply frame at the end of the stream: %x", rest)
				}
				n := int(binary.BigEndian.Uint16(rest))
				var m dns.Msg
				if err := m.Unpack(rest[2 : 2+n]); err != nil {
					t.Fatalf("reply frame does not parse: %v\n%x", err, rest[2:2+n])
				}
				if !m.Response {
					t.Fatalf("reply without QR: %v", &m)
				}
				if want[m.Id] == 0 {
					t.Fatalf("reply with ID %d, which no complete query sent (or more replies than queries)", m.Id)
				}
				want[m.Id]--
				rest = rest[2+n:]
			}
			// Every query the listener read is answered before it closes, also
			// when it stops reading at a bad frame or a stall. (Unless the
			// connection was refused at once for tcp_connections.)
			if tcp.Refused.Load() == refused {
				for id, n := range want {
					if n != 0 {
						return fmt.Errorf("%d queries with ID %d not answered", n, id)
					}
				}
			}
			return nil
		}
		if err := exchange(); err != nil {
			// Once more before failing: a listener goroutine descheduled past
			// the 50 ms tcp_read_timeout on a loaded machine cuts the stream
			// legitimately. A bug loses the queries every time.
			if err := exchange(); err != nil {
				t.Fatal(err)
			}
		}

		// The listener still serves a well-formed client.
		alive(t)
		if err := fzAskTCP(addr); err != nil {
			t.Fatal(err)
		}
		fzNoLeak(t, fwd)
	})
}

func fzReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// fzNoLeak waits for the forwarder's in-flight count to drain: a query slot
// a listener took and never gave back would eventually shed every query.
func fzNoLeak(t *testing.T, fwd *forwarder.Forwarder) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); fwd.InFlight() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d queries still in flight", fwd.InFlight())
		}
	}
}

// FuzzUDPPacket sends arbitrary bytes as one datagram, then a ready.spartan
// query. The latter is always answered; the former gets at most one reply,
// a DNS response with its ID, and none at all when it is too short for a
// header or is itself a response.
func FuzzUDPPacket(f *testing.F) {
	fwd := fzForwarder()
	addr := fzAddr(f, "udp")
	alive := fzServe(f, listener.NewUDP(addr, fwd, zerolog.Nop()), func() error { return fzAskUDP(addr) })

	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > 65507 { // the largest UDP payload over IPv4
			return
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(pkt); err != nil {
			t.Fatalf("write: %v", err)
		}
		var pktID uint16
		if len(pkt) >= 2 {
			pktID = binary.BigEndian.Uint16(pkt)
		}
		id := ^pktID // never the fuzzed packet's ID, so the two replies are told apart
		if _, err := c.Write(fzReadyQuery(id)); err != nil {
			t.Fatalf("write ready.spartan: %v", err)
		}
		answerable := len(pkt) >= 12 && pkt[2]&0x80 == 0

		buf := make([]byte, 65535)
		replies, ready := 0, false
		deadline := time.Now().Add(2 * time.Second)
		for {
			// Once the probe is answered, linger briefly for a reply the
			// fuzzed packet should (or must not) get: each query is answered
			// in its own goroutine, so the order is not fixed.
			if ready && (replies > 0 || !answerable) {
				deadline = time.Now().Add(5 * time.Millisecond)
			}
			_ = c.SetReadDeadline(deadline)
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) && ready {
					break
				}
				t.Fatalf("ready.spartan not answered: %v", err)
			}
			b := buf[:n]
			if n >= 2 && binary.BigEndian.Uint16(b) == id && !ready {
				if err := fzCheckReady(b, id); err != nil {
					t.Fatal(err)
				}
				ready = true
				continue
			}
			replies++
			if !answerable {
				t.Fatalf("answered a packet that must be dropped: %x", b)
			}
			if replies > 1 {
				t.Fatalf("a second reply: %x", b)
			}
			var m dns.Msg
			if err := m.Unpack(b); err != nil {
				t.Fatalf("reply does not parse: %v\n%x", err, b)
			}
			if !m.Response || m.Id != pktID {
				t.Fatalf("reply header: %v", &m)
			}
		}
		if answerable && replies == 0 {
			t.Fatal("no reply to a query")
		}
		alive(t)
		fzNoLeak(t, fwd)
	})
}
