package forwarder

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/dnstest"
	"golang.org/x/sys/unix"
)

// The loop recycles upstream sockets: sequential queries to one upstream
// reuse one socket (from a fresh port each time, which the test also
// checks) instead of opening one per query. With one upstream there is no
// loser, and the socket is handed back before the client gets its reply,
// so exactly one socket is ever needed.
func TestLoopRecyclesUpstreamSockets(t *testing.T) {
	a := dnstest.Start(t, "127.0.0.1", dnstest.Answer("10.9.9.9"))
	cfg := config.Default()
	cfg.UpstreamResolvers = []netip.AddrPort{a.Addr}
	cfg.Cache.Enabled = false // every query must reach the upstream: it counts sockets per upstream query
	f := New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	sock := NewSocket(fd)
	defer sock.Release()
	var reply ReplyPath
	loop, err := f.NewLoop(sock, &reply)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- loop.Run() }()

	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 30
	buf := make([]byte, 512)
	for range n {
		m := new(dns.Msg)
		m.SetQuestion("recycle.example.", dns.TypeA)
		q, _ := m.Pack()
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	loop.Retire()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Read after Run returned: the pool is the loop goroutine's alone.
	if got := loop.up.opened; got != 1 {
		t.Errorf("%d upstream sockets opened for %d sequential queries, want 1", got, n)
	}
	ports := map[uint16]bool{}
	for _, s := range a.Seen() {
		ports[s.From.Port()] = true
	}
	if len(ports) < n*9/10 {
		t.Errorf("%d distinct source ports over %d queries from one recycled socket", len(ports), n)
	}
}

// Idle sockets are trimmed to what the last period needed at its busiest:
// a burst's sockets are kept one period, then closed.
func TestLoopTrimsIdleSockets(t *testing.T) {
	l := drivenLoop(t)
	up := netip.MustParseAddrPort("127.0.0.1:9") // connect only; nothing is sent
	s := l.alloc()
	var fds []int
	var socks []int32
	for k := range 3 {
		i, err := l.dial(up, s, k)
		if err != nil {
			t.Fatal(err)
		}
		fds, socks = append(fds, l.up.socks[i].fd), append(socks, i)
	}
	l.hangUp(socks[0], false)
	l.hangUp(socks[1], false)
	open := func() int {
		n := 0
		for _, fd := range fds {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
				n++
			}
		}
		return n
	}
	first := l.up.trimAt
	if first == 0 {
		t.Fatal("no trim scheduled with idle sockets")
	}
	l.trim(first - 1)
	if got := open(); got != 3 {
		t.Fatalf("trimmed before its time: %d of 3 sockets open", got)
	}
	// The busiest moment had 3 in use; 1 still is: keep 2 idle.
	l.trim(first)
	if got := len(l.up.idle[0]); got != 2 {
		t.Fatalf("after the first trim: %d idle, want 2", got)
	}
	// The next period needed only the one in use: close the idle ones.
	l.trim(l.up.trimAt)
	if got := open(); got != 1 || len(l.up.idle[0]) != 0 || l.up.trimAt != 0 {
		t.Fatalf("after the second trim: %d open, %d idle, trim at %d; want 1, 0, none", got, len(l.up.idle[0]), l.up.trimAt)
	}
}

// drivenLoop returns a loop that never runs: the test drives it by hand.
func drivenLoop(t *testing.T) *Loop {
	t.Helper()
	return drivenLoopFor(t, New(state.NewStore(config.Default(), state.NewRegistry()), zerolog.Nop()))
}

// drivenLoopFor is drivenLoop for forwarder f.
func drivenLoopFor(t *testing.T, f *Forwarder) *Loop {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := NewSocket(fd)
	t.Cleanup(sock.Release)
	var reply ReplyPath
	l, err := f.NewLoop(sock, &reply)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.shutdown)
	return l
}
