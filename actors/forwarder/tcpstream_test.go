package forwarder_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
)

// tcpUpstream is a TCP upstream on 127.0.0.1 that reads one framed query
// per connection and writes back what script makes of it (raw bytes,
// framing included), then keeps the connection open until the client
// closes it, unless script says to close it at once.
func tcpUpstream(t *testing.T, script func(q *dns.Msg) (out []byte, closeAfter bool)) netip.AddrPort {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				b, err := dnstest.ReadFrame(c)
				if err != nil {
					return
				}
				var q dns.Msg
				if q.Unpack(b) != nil {
					return
				}
				out, closeAfter := script(&q)
				if _, err := c.Write(out); err != nil || closeAfter {
					return
				}
				_, _ = io.Copy(io.Discard, c) // until the client hangs up
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// answerTo is the reply a good upstream gives q: one A record, ip.
func answerTo(q *dns.Msg, ip string) *dns.Msg { return dnstest.Answer(ip)(q, true).Msg }

// tcpForwarder returns a forwarder whose default route is ups, in that
// order, over which upstream queries go when the client came over TCP. Its
// choice among equally healthy upstreams is fixed (the last untried one
// first) and its hedge delay is longer than upstream_timeout, so an
// upstream not among the first two is only ever asked because both of
// those failed fast.
func tcpForwarder(timeout time.Duration, ups ...netip.AddrPort) (*forwarder.Forwarder, *state.Store) {
	cfg := config.Default()
	cfg.UpstreamTimeout = timeout
	cfg.UpstreamResolvers = ups
	cfg.Limits.TCPMessageMax = 4096
	reg := state.NewRegistry()
	store := state.NewStore(cfg, reg)
	f := forwarder.New(store, zerolog.Nop())
	f.Rand = func(int) int { return 0 }
	f.Hedge = 10 * timeout
	f.LoserGrace = 100 * time.Millisecond
	return f, store
}

// On a TCP upstream connection a well-framed message that is not the reply
// (RFC 7766 section 7 matches replies by ID and question) is skipped, like
// a stray UDP datagram: reading goes on, and the real reply after it wins.
func TestTCPUpstreamStrayFrameSkipped(t *testing.T) {
	strays := []struct {
		name  string
		stray func(t *testing.T, q *dns.Msg) []byte
	}{
		{"wrong ID", func(t *testing.T, q *dns.Msg) []byte {
			r := answerTo(q, "10.6.6.6")
			r.Id ^= 1
			return dnstest.Pack(t, r)
		}},
		{"wrong question", func(t *testing.T, q *dns.Msg) []byte {
			other := q.Copy()
			other.Question[0].Name = "other.example."
			return dnstest.Pack(t, answerTo(other, "10.6.6.6"))
		}},
		{"QR clear", func(t *testing.T, q *dns.Msg) []byte {
			r := answerTo(q, "10.6.6.6")
			r.Response = false
			return dnstest.Pack(t, r)
		}},
		{"unparseable", func(t *testing.T, q *dns.Msg) []byte {
			// The reply's header and question, then an answer count with
			// no record behind it.
			b := dnstest.Pack(t, answerTo(q, "10.6.6.6"))
			return b[:12+len(q.Question[0].Name)+1+4]
		}},
	}
	for _, tc := range strays {
		t.Run(tc.name, func(t *testing.T) {
			up := tcpUpstream(t, func(q *dns.Msg) ([]byte, bool) {
				return append(dnstest.Frame(tc.stray(t, q)), dnstest.Frame(dnstest.Pack(t, answerTo(q, "10.9.9.9")))...), false
			})
			f, store := tcpForwarder(2*time.Second, up)
			q, qb := query(t, "stray.example.", dns.TypeA)
			r := unpack(t, f.Handle(qb, true))
			if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.9.9.9" {
				t.Fatalf("reply %v, want the real reply after the stray frame", r)
			}
			u := store.Load().Default.Upstreams[0]
			if s, fl := u.Successes.Load(), u.Failures.Load(); s != 1 || fl != 0 {
				t.Fatalf("upstream scored %d successes, %d failures; want 1, 0", s, fl)
			}
		})
	}
}

// Only a broken frame ends a TCP attempt: a length prefix no DNS message
// can have (shorter than a header, or over limits.tcp_message_max) or EOF
// in the middle of a frame. The attempt fails fast, and the race goes on
// to the next upstream at once (well before the hedge delay, which here is
// longer than upstream_timeout).
func TestTCPUpstreamBrokenFrameFailsFast(t *testing.T) {
	broken := []struct {
		name string
		out  func(t *testing.T, reply []byte) ([]byte, bool)
	}{
		{"length under a header", func(t *testing.T, reply []byte) ([]byte, bool) {
			return dnstest.Frame(reply[:11]), false
		}},
		{"length over the limit", func(t *testing.T, reply []byte) ([]byte, bool) {
			return append(binary.BigEndian.AppendUint16(nil, 4097), reply...), false
		}},
		{"EOF mid-frame", func(t *testing.T, reply []byte) ([]byte, bool) {
			return dnstest.Frame(reply)[:2+len(reply)/2], true
		}},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			bad := func(q *dns.Msg) ([]byte, bool) { return tc.out(t, dnstest.Pack(t, answerTo(q, "10.6.6.6"))) }
			good := tcpUpstream(t, func(q *dns.Msg) ([]byte, bool) {
				return dnstest.Frame(dnstest.Pack(t, answerTo(q, "10.9.9.9"))), false
			})
			// Picked last-first: the two broken ones, then good.
			const timeout = 2 * time.Second
			f, store := tcpForwarder(timeout, good, tcpUpstream(t, bad), tcpUpstream(t, bad))
			q, qb := query(t, "broken.example.", dns.TypeA)
			start := time.Now()
			r := unpack(t, f.Handle(qb, true))
			if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.9.9.9" {
				t.Fatalf("reply %v, want the next upstream's", r)
			}
			if took := time.Since(start); took >= timeout {
				t.Fatalf("took %v: the broken attempts did not fail fast", took)
			}
			for i, u := range store.Load().Default.Upstreams {
				want := uint64(1) // the two broken ones: a failure each
				if i == 0 {
					want = 0
				}
				if got := u.Failures.Load(); got != want {
					t.Errorf("upstream %d: %d failures, want %d", i, got, want)
				}
			}
		})
	}
}
