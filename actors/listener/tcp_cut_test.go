package listener

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/testkit"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/test/dnstest"
	"golang.org/x/sys/unix"
)

// bigTXT answers every query with about 16 KiB of TXT: a client that does
// not read fills its buffers after a few hundred replies.
func bigTXT(q *dns.Msg, _ bool) dnstest.Reply {
	m := new(dns.Msg)
	m.SetReply(q)
	chunk := strings.Repeat("x", 250)
	for range 64 {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{chunk}})
	}
	return dnstest.Reply{Msg: m}
}

func wire(t *testing.T, name string, qtype uint16, opcode int) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Opcode = opcode
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(f, uint16(len(b)))
	copy(f[2:], b)
	return f
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settle waits until the goroutine and fd counts are back to what they were.
func settle(t *testing.T, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines %d (baseline %d), fds %d (baseline %d)\n%s", g, goroutines, f, fds, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readFrames reads reply frames until the server ends the connection (EOF
// or a reset) or d passes; closed says whether it ended.
func readFrames(c net.Conn, d time.Duration) (replies []*dns.Msg, closed bool) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return replies, !errors.Is(err, os.ErrDeadlineExceeded)
		}
		b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			return replies, !errors.Is(err, os.ErrDeadlineExceeded)
		}
		m := new(dns.Msg)
		if m.Unpack(b) == nil {
			replies = append(replies, m)
		}
	}
}

// Misbehaving clients are cut off, each close counted by its reason; a
// client that only asks something unsupported is answered and kept.
func TestTCPCutsMisbehavingClients(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", bigTXT)
	cases := []struct {
		name   string
		tune   func(l *TCP)
		rcvbuf int // client receive buffer (0: default)
		// talk writes to the connection and returns whether the client
		// reads its replies afterwards.
		talk       func(t *testing.T, c net.Conn)
		wantCut    string
		wantIDs    int  // replies expected before the end
		wantClosed bool // the server ends the connection
	}{
		{
			name: "garbage frame after a query: the query answered, then closed",
			talk: func(t *testing.T, c net.Conn) {
				stream := wire(t, "ready.spartan.", dns.TypeA, dns.OpcodeQuery)
				// 14 bytes claiming 5 questions: not a DNS message.
				stream = append(stream, 0, 14, 0xde, 0xad, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 3, 'a')
				stream = append(stream, wire(t, "localhost.", dns.TypeA, dns.OpcodeQuery)...) // never read
				_, _ = c.Write(stream)
			},
			wantCut: "garbage_frame", wantIDs: 1, wantClosed: true,
		},
		{
			name: "a frame cutting its message short: closed, no reply",
			talk: func(t *testing.T, c net.Conn) {
				q := wire(t, "ready.spartan.", dns.TypeA, dns.OpcodeQuery)
				binary.BigEndian.PutUint16(q, uint16(len(q)-2-5))
				_, _ = c.Write(q[:len(q)-5])
			},
			wantCut: "garbage_frame", wantIDs: 0, wantClosed: true,
		},
		{
			name: "unsupported opcode: NOTIMP, and the connection serves on",
			talk: func(t *testing.T, c net.Conn) {
				_, _ = c.Write(append(wire(t, "example.com.", dns.TypeSOA, dns.OpcodeUpdate), wire(t, "ready.spartan.", dns.TypeA, dns.OpcodeQuery)...))
			},
			wantIDs: 2, wantClosed: false,
		},
		{
			name:    "replies left unread past the bound",
			tune:    func(l *TCP) { l.UnreadLimit = 32 << 10; l.limits.TCPReadTimeout = 30 * time.Second },
			rcvbuf:  4096,
			talk:    flood,
			wantCut: "unread_replies", wantIDs: -1, wantClosed: true,
		},
		{
			name:    "reply writes blocked past the write timeout",
			tune:    func(l *TCP) { l.UnreadLimit = 1 << 30; l.limits.TCPReadTimeout = 300 * time.Millisecond },
			rcvbuf:  4096,
			talk:    flood,
			wantCut: "write_blocked", wantIDs: -1, wantClosed: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			goroutines, fds := runtime.NumGoroutine(), openFDs(t)
			fwd, cfg := forwarderTo(up.Addr)
			addr := testkit.FreeAddrPort(t)
			l := NewTCP(addr, fwd, cfg.Limits, zerolog.Nop())
			if tc.tune != nil {
				tc.tune(l)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- l.Serve(ctx) }()

			d := net.Dialer{Timeout: time.Second}
			if tc.rcvbuf > 0 {
				d.Control = func(_, _ string, rc syscall.RawConn) error {
					return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, tc.rcvbuf) })
				}
			}
			var c net.Conn
			var err error
			for range 100 {
				if c, err = d.Dial("tcp", addr.String()); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.talk(t, c)
			wait := 3 * time.Second
			if !tc.wantClosed {
				wait = 500 * time.Millisecond
			}
			replies, closed := readFrames(c, wait)
			_ = c.Close()
			if closed != tc.wantClosed {
				t.Errorf("connection closed by the server: %v, want %v", closed, tc.wantClosed)
			}
			if tc.wantIDs >= 0 && len(replies) != tc.wantIDs {
				t.Errorf("%d replies, want %d: %v", len(replies), tc.wantIDs, replies)
			}
			if tc.name == "unsupported opcode: NOTIMP, and the connection serves on" && len(replies) == 2 {
				if replies[0].Rcode != dns.RcodeNotImplemented && replies[1].Rcode != dns.RcodeNotImplemented {
					t.Errorf("no NOTIMP reply: %v", replies)
				}
			}
			got := map[string]uint64{}
			l.EachCut(func(r string, n uint64) { got[r] = n })
			for r, n := range got {
				want := uint64(0)
				if r == tc.wantCut {
					want = 1
				}
				if n != want {
					t.Errorf("cuts %q = %d, want %d (all: %v)", r, n, want, got)
				}
			}
			cancel()
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return")
			}
			l.Close()
			settle(t, goroutines, fds)
		})
	}
}

// flood pipelines queries with 16 KiB answers and never reads, until its
// own writes block (the server has stopped reading) or 2000 are sent.
func flood(t *testing.T, c net.Conn) {
	q := wire(t, "big.example.", dns.TypeTXT, dns.OpcodeQuery)
	var stream []byte
	for i := range 2000 {
		f := append([]byte{}, q...)
		binary.BigEndian.PutUint16(f[2:], uint16(i))
		stream = append(stream, f...)
	}
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(stream)
	// Give the server time to notice before the test reads anything: a
	// read would drain what it measures.
	time.Sleep(1500 * time.Millisecond)
}
