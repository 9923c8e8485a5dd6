package listener_test

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/listener"
	"github.com/spartan-dns/spartan/test/dnstest"
)

// Header flags, as the wire has them: byte 2 holds QR, opcode, AA, TC, RD;
// byte 3 RA, Z, AD, CD and the rcode.
const (
	hdrQR     = 0x80
	hdrOpcode = 0x78
	hdrRcode  = 0x0f
)

// Spartan's own reply to a message whose opcode is not QUERY is NOTIMP
// with QR set, ID and opcode echoed, and no other flag: AA, TC, RD, RA, Z,
// AD and CD are defined for QUERY only, and BIND's NOTIMP carries none of
// them (SPEC, "Bad input"). Over UDP and TCP, through the real listeners.
func TestNotImpCarriesNoQueryFlags(t *testing.T) {
	fwd := fzForwarder()
	udpAddr, tcpAddr := fzAddr(t, "udp"), fzAddr(t, "tcp")
	fzServe(t, listener.NewUDP(udpAddr, fwd, zerolog.Nop()), func() error { return fzAskUDP(udpAddr) })
	fzServe(t, listener.NewTCP(tcpAddr, fwd, fzLimits(), zerolog.Nop()), func() error { return fzAskTCP(tcpAddr) })

	exchanges := map[string]func(t *testing.T, q []byte) []byte{
		"udp": func(t *testing.T, q []byte) []byte {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(udpAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(q); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			return buf[:n]
		},
		"tcp": func(t *testing.T, q []byte) []byte {
			c, err := net.DialTimeout("tcp", tcpAddr.String(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if err := dnstest.WriteFrame(c, q); err != nil {
				t.Fatal(err)
			}
			r, err := dnstest.ReadFrame(c)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			return r
		},
	}
	opcodes := []struct {
		name   string
		opcode int
	}{
		{"IQUERY", dns.OpcodeIQuery},
		{"STATUS", dns.OpcodeStatus},
		{"NOTIFY", dns.OpcodeNotify},
		{"UPDATE", dns.OpcodeUpdate},
		{"unassigned 15", 15},
	}
	for network, exchange := range exchanges {
		for _, op := range opcodes {
			t.Run(network+"/"+op.name, func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion("notimp.example.", dns.TypeSOA)
				m.Opcode = op.opcode
				// Every flag a client can set: none may come back.
				m.Authoritative, m.Truncated, m.RecursionDesired = true, true, true
				m.RecursionAvailable, m.Zero, m.AuthenticatedData, m.CheckingDisabled = true, true, true, true
				q, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				r := exchange(t, q)
				if len(r) < 12 {
					t.Fatalf("reply %x shorter than a header", r)
				}
				want2 := byte(hdrQR) | q[2]&hdrOpcode
				if r[0] != q[0] || r[1] != q[1] || r[2] != want2 || r[3] != dns.RcodeNotImplemented {
					t.Fatalf("reply header %x, want ID %x, flags %02x%02x (QR, opcode %d, NOTIMP, nothing else)",
						r[:4], q[:2], want2, dns.RcodeNotImplemented, op.opcode)
				}
				var rm dns.Msg
				if err := rm.Unpack(r); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
				if rm.Id != m.Id || rm.Opcode != op.opcode || !rm.Response || rm.Rcode != dns.RcodeNotImplemented {
					t.Fatalf("miekg reads %v", &rm)
				}
			})
		}
	}
}

// The TCP listener drops a response, as UDP does, by the same check, and
// counts it as UDP does; the connection serves on. A frame too short for a
// header is counted the same way, but it is no DNS message: it also ends
// the connection, after the replies already due (issue 17).
func TestTCPDropsCountedAsUDP(t *testing.T) {
	fwd := fzForwarder()
	addr := fzAddr(t, "tcp")
	fzServe(t, listener.NewTCP(addr, fwd, fzLimits(), zerolog.Nop()), func() error { return fzAskTCP(addr) })
	dropped := func() uint64 { return fwd.Stats.Queries[forwarder.RouteNone][forwarder.OutcomeDropped].Load() }

	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("ready.spartan.", dns.TypeA)
	resp, _ := m.Pack()
	resp[2] |= hdrQR
	good, _ := m.Pack()
	after := append([]byte{}, good...)
	after[0] ^= 0xff // another ID
	var stream []byte
	for _, f := range [][]byte{resp, good, resp[:11], after} {
		stream = append(stream, dnstest.Frame(f)...)
	}
	before := dropped()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(stream); err != nil {
		t.Fatal(err)
	}
	// The good query after the dropped response is answered...
	r, err := dnstest.ReadFrame(c)
	if err != nil {
		t.Fatalf("query after the dropped response not answered: %v", err)
	}
	if r[0] != good[0] || r[1] != good[1] || r[3]&hdrRcode != dns.RcodeSuccess {
		t.Fatalf("reply %x to query %x", r, good)
	}
	// ...and the short frame ends the connection: the query after it is not.
	if r, err := dnstest.ReadFrame(c); err == nil {
		t.Fatalf("reply %x after a frame too short for a header: the connection should have closed", r)
	}
	if got := dropped() - before; got != 2 {
		t.Fatalf("dropped counted %d, want 2", got)
	}
}
