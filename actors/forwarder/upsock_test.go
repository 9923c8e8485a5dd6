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

// The loop sends from a pool of sockets: sequential queries to one upstream
// share minIdle sockets, each picked at random and replaced after maxUses
// queries, instead of opening one per query. The port of a query is thus
// one of several (consecutive queries rarely share one: LIFO reuse would
// give the same port every time) and no port carries more than maxUses.
func TestLoopPoolsUpstreamSockets(t *testing.T) {
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
	const n = 200
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
	if got, most := loop.up.opened, n/maxUses+minIdle+1; got < n/maxUses || got > most {
		t.Errorf("%d upstream sockets opened for %d sequential queries, want %d to %d", got, n, n/maxUses, most)
	}
	uses := map[uint16]int{}
	repeats := 0
	seen := a.Seen()
	for i, s := range seen {
		uses[s.From.Port()]++
		if i > 0 && s.From.Port() == seen[i-1].From.Port() {
			repeats++
		}
	}
	for port, k := range uses {
		if k > maxUses {
			t.Errorf("port %d carried %d queries, more than %d", port, k, maxUses)
		}
	}
	// A random pick among minIdle sockets repeats about n/minIdle times.
	if repeats > n/3 {
		t.Errorf("%d of %d consecutive queries from the same port: the idle socket is not picked at random", repeats, n)
	}
}

// Idle sockets are trimmed to what the last period needed at its busiest,
// at least minIdle while queries go out, none after a period without: a
// burst's sockets are kept one period, and an idle loop holds none.
func TestLoopTrimsIdleSockets(t *testing.T) {
	l := drivenLoop(t)
	up := netip.MustParseAddrPort("127.0.0.1:9") // nothing is sent
	s := l.alloc()
	const burst = minIdle + 4
	var fds []int
	var socks []int32
	for k := range burst {
		i, err := l.dial(up, s, k%maxSends)
		if err != nil {
			t.Fatal(err)
		}
		fds, socks = append(fds, l.up.socks[i].fd), append(socks, i)
	}
	for _, i := range socks[1:] {
		l.hangUp(i, false)
	}
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
	if got := open(); got != burst {
		t.Fatalf("trimmed before its time: %d of %d sockets open", got, burst)
	}
	// The busiest moment had all in use; 1 still is: keep the rest idle.
	l.trim(first)
	if got := len(l.up.idle[0]); got != burst-1 {
		t.Fatalf("after the first trim: %d idle, want %d", got, burst-1)
	}
	// The next period sent one more query: keep minIdle idle for the
	// random choice.
	i, err := l.dial(up, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.hangUp(i, false)
	l.trim(l.up.trimAt)
	if got := len(l.up.idle[0]); got != minIdle {
		t.Fatalf("after a period with one query: %d idle, want %d", got, minIdle)
	}
	// The next one sent nothing: close every idle socket.
	l.trim(l.up.trimAt)
	if got := open(); got != 1 || len(l.up.idle[0]) != 0 || l.up.trimAt != 0 {
		t.Fatalf("after an idle period: %d open, %d idle, trim at %d; want 1, 0, none", got, len(l.up.idle[0]), l.up.trimAt)
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
