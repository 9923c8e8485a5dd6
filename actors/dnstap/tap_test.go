package dnstap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

// collector is a dnstap collector on a unix socket: it accepts one
// connection at a time and keeps what it decodes.
type collector struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []*dnstap.Message
	conn net.Conn // the connection being read
	done chan struct{}

	stopOnce sync.Once
}

func startCollector(t *testing.T, path string) *collector {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.read(conn)
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *collector) read(conn net.Conn) {
	defer conn.Close()
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	r, err := framestream.NewReader(conn, &framestream.ReaderOptions{ContentTypes: [][]byte{dnstap.FSContentType}, Bidirectional: true})
	if err != nil {
		return
	}
	buf := make([]byte, 65536)
	for {
		n, err := r.ReadFrame(buf)
		if err != nil {
			return
		}
		var d dnstap.Dnstap
		if proto.Unmarshal(buf[:n], &d) == nil {
			c.mu.Lock()
			c.msgs = append(c.msgs, d.Message)
			c.mu.Unlock()
		}
	}
}

// stop closes the listener and the connection being read.
func (c *collector) stop() {
	c.stopOnce.Do(func() {
		c.ln.Close()
		c.mu.Lock()
		if c.conn != nil {
			c.conn.Close()
		}
		c.mu.Unlock()
		<-c.done
	})
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// eventually polls cond for up to 5 s: the tap writes from its own goroutine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func query(t *testing.T, name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serve(t *testing.T, tap *Tap) (cancel func() error) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tap.Serve(ctx) }()
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() {
			stop()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				err = errors.New("Serve did not return within 5 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = cancel() })
	return cancel
}

// TestSocketCollector: messages reach a collector with their type, peer
// and bytes; without a collector they are dropped and counted, and the tap
// connects once the collector is back; a kill (cancel) ends Serve.
func TestSocketCollector(t *testing.T) {
	dir, err := os.MkdirTemp("", "tap") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")
	tap := New(path, "", "spartan test", zerolog.Nop())
	cancel := serve(t, tap)
	peer := netip.MustParseAddrPort("127.0.0.9:5300")

	// No collector yet: what is logged meanwhile is dropped, and counted.
	tap.Message(ClientQuery, query(t, "early.example."), peer, false)
	eventually(t, "the drop", func() bool { return tap.Dropped.Load() == 1 })

	c := startCollector(t, path)
	q := query(t, "late.example.")
	eventually(t, "the collector to get a message", func() bool {
		tap.Message(ForwarderQuery, q, peer, true)
		return c.count() > 0
	})
	c.mu.Lock()
	m := c.msgs[0]
	c.mu.Unlock()
	if m.GetType() != dnstap.Message_FORWARDER_QUERY || m.GetSocketProtocol() != dnstap.SocketProtocol_TCP ||
		string(m.GetQueryMessage()) != string(q) || netip.AddrFrom4([4]byte(m.GetResponseAddress())) != peer.Addr() ||
		m.GetResponsePort() != uint32(peer.Port()) {
		t.Errorf("collector got %v", m)
	}

	// The collector goes away and comes back: the tap notices on a write
	// and connects to the new one.
	c.stop()
	c2 := startCollector(t, path)
	eventually(t, "the new collector to get a message", func() bool {
		tap.Message(ClientResponse, q, peer, false)
		return c2.count() > 0
	})
	if err := cancel(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve after cancel = %v", err)
	}
}

// TestFullQueueDrops: with nothing draining the queue, the query path
// never blocks: QueueSize messages wait, the rest are dropped and counted.
func TestFullQueueDrops(t *testing.T) {
	tap := New("", filepath.Join(t.TempDir(), "x.tap"), "v", zerolog.Nop())
	q := query(t, "full.example.")
	for range QueueSize + 10 {
		tap.Message(ClientQuery, q, netip.MustParseAddrPort("127.0.0.1:1"), false)
	}
	if d := tap.Dropped.Load(); d != 10 {
		t.Fatalf("dropped %d, want 10", d)
	}
}

func TestNewOff(t *testing.T) {
	if New("", "", "v", zerolog.Nop()) != nil {
		t.Fatal("New without a destination is not nil (off)")
	}
	var tap *Tap
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
}
