package forwarder

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
	"golang.org/x/sys/unix"
)

// The retransmit rule, as both engines apply it: after every upstream has
// been tried, the hedge and each retry timer retransmit to an upstream
// still silent, over UDP only, at most maxRetransmits times, at intervals
// that double from 2 × the hedge delay up to maxRetryGap.
func TestRetransmitRule(t *testing.T) {
	const h = 10 * time.Millisecond
	for _, tc := range []struct {
		name   string
		ups    int
		udp    bool
		failed []int // upstreams that failed fast before the hedge
		want   []int // what each timer round starts: an upstream, -1 none
		gaps   []time.Duration
	}{
		{name: "one upstream: retransmits to it, bounded", ups: 1, udp: true,
			want: []int{0, 0, 0, 0, -1, -1}, gaps: []time.Duration{2 * h, 4 * h, 8 * h, 0, 0, 0}},
		{name: "an untried upstream first, then retransmits", ups: 3, udp: true,
			want: []int{-2, 0, 0, 0, 0, -1}, gaps: []time.Duration{2 * h, 4 * h, 8 * h, 16 * h, 0, 0}},
		{name: "never to an upstream that failed fast", ups: 2, udp: true, failed: []int{0},
			want: []int{1, 1, 1, 1, -1}, gaps: []time.Duration{2 * h, 4 * h, 8 * h, 0, 0}},
		{name: "TCP: no retransmit", ups: 2, udp: false, want: []int{-1, -1}, gaps: []time.Duration{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &Forwarder{Rand: rand.New(rand.NewPCG(3, 4)).IntN, Stats: &Stats{}}
			ups := upstreamsWithScores(make([]int, tc.ups)...)
			var r raceRules
			r.reset(ups)
			for range min(tc.ups, 2) {
				r.next(f)
			}
			for _, i := range tc.failed {
				r.settle(i, nil)
			}
			silent, untried := r.tried&^r.heard, -1
			for i := range tc.ups {
				if r.tried&(1<<i) == 0 {
					untried = i
				}
			}
			for round, want := range tc.want {
				got := r.again(f, tc.udp)
				switch {
				case want == -2: // the untried one
					if got != untried {
						t.Fatalf("round %d: started %d, want the untried upstream %d", round, got, untried)
					}
					silent |= 1 << untried
				case want == -1:
					if got != -1 {
						t.Fatalf("round %d: started %d, want none", round, got)
					}
				default:
					if got < 0 || silent&(1<<got) == 0 || (tc.ups < 3 && got != want) {
						t.Fatalf("round %d: retransmitted to %d, want a silent upstream (%b)", round, got, silent)
					}
				}
				gap, ok := r.retryIn(h, time.Hour, tc.udp)
				if wantGap := tc.gaps[round]; ok != (wantGap != 0) || gap != wantGap {
					t.Fatalf("round %d: next retry in %v (%v), want %v", round, gap, ok, wantGap)
				}
			}
			if r.retransmits > maxRetransmits {
				t.Fatalf("%d retransmits", r.retransmits)
			}
		})
	}
	t.Run("gaps are capped, and none past upstream_timeout", func(t *testing.T) {
		var r raceRules
		r.reset(upstreamsWithScores(0))
		r.rounds = 10
		if gap, ok := r.retryIn(h, time.Hour, true); !ok || gap != maxRetryGap {
			t.Fatalf("gap %v %v, want %v", gap, ok, maxRetryGap)
		}
		r.rounds = 1
		if _, ok := r.retryIn(h, 2*h, true); ok {
			t.Fatal("a retry timer due at upstream_timeout")
		}
	})
}

// The loop, driven by hand: a query whose every upstream datagram is lost
// retransmits at the hedge delay and then at doubling intervals, each
// time as a new upstream query with a fresh ID from a fresh source port; a
// reply, even a late one to an earlier attempt, ends the retransmits; the
// retransmits are bounded. The upstream is a real socket the test reads
// without waiting: a datagram sent over loopback is queued before sendto
// returns.
func TestLoopRetransmitsLostQueries(t *testing.T) {
	const h, timeout = 10 * time.Millisecond, time.Second
	// The schedule after the query comes: the hedge, then +2h, +4h, +8h.
	sends := []time.Duration{h, 3 * h, 7 * h, 15 * h}
	for _, tc := range []struct {
		name   string
		ups    int
		answer int // which upstream query (0: the first) is answered once 'after' retransmits have gone out; -1: none
		after  int
	}{
		{name: "every datagram but the last retransmit's lost", ups: 1, answer: 4, after: 4},
		{name: "a late reply to the first query wins and ends the retransmits", ups: 1, answer: 0, after: 2},
		{name: "the first retransmit answered", ups: 1, answer: 1, after: 1},
		{name: "nothing answered: bounded, then SERVFAIL", ups: 1, answer: -1, after: 4},
		{name: "two upstreams: every datagram but the last retransmit's lost", ups: 2, answer: 5, after: 4},
		{name: "two upstreams: a late reply wins, the other still silent", ups: 2, answer: 0, after: 1},
		{name: "two upstreams: nothing answered", ups: 2, answer: -1, after: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			var ups []int
			for range tc.ups {
				fd, addr := rawUDP(t)
				ups = append(ups, fd)
				cfg.UpstreamResolvers = append(cfg.UpstreamResolvers, addr)
			}
			client, clientAddr := rawUDP(t)
			cfg.UpstreamTimeout = timeout
			f := New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop())
			f.Hedge = h
			l := drivenLoopFor(t, f)

			m := new(dns.Msg)
			m.SetQuestion("lossy.example.", dns.TypeA)
			qb, _ := m.Pack()
			var from sockaddr
			from.set(clientAddr)
			l.accept(qb, &from)
			start := l.slots[0].start

			type sent struct {
				up   int // the upstream's socket
				id   uint16
				from unix.Sockaddr
			}
			var got []sent
			ids, ports := map[uint16]bool{}, map[int]bool{}
			drain := func(when string) {
				buf := make([]byte, 512)
				for _, up := range ups {
					for {
						n, sa, err := unix.Recvfrom(up, buf, unix.MSG_DONTWAIT)
						if err != nil {
							break
						}
						id := uint16(buf[0])<<8 | uint16(buf[1])
						port := sa.(*unix.SockaddrInet4).Port
						if n < headerLen || ids[id] || ports[port] {
							t.Fatalf("%s: upstream query %d reuses ID %d or port %d", when, len(got), id, port)
						}
						ids[id], ports[port] = true, true
						got = append(got, sent{up, id, sa})
					}
				}
			}
			drain("the query")
			if len(got) != tc.ups {
				t.Fatalf("%d upstream queries at first, want %d", len(got), tc.ups)
			}
			for i, at := range sends[:tc.after] {
				l.fireTimers(start + int64(at) - 1)
				drain("just before a retry")
				if len(got) != tc.ups+i {
					t.Fatalf("%d upstream queries before %v, want %d", len(got), at, tc.ups+i)
				}
				l.fireTimers(start + int64(at))
				drain("a retry")
				if len(got) != tc.ups+i+1 {
					t.Fatalf("%d upstream queries at %v, want %d", len(got), at, tc.ups+i+1)
				}
			}
			if tc.answer >= 0 {
				r := new(dns.Msg)
				r.SetReply(m)
				r.Id = got[tc.answer].id
				rb, _ := r.Pack()
				if err := unix.Sendto(got[tc.answer].up, rb, 0, got[tc.answer].from); err != nil {
					t.Fatal(err)
				}
				n, _ := epollPoll(l.ep, l.events[:])
				l.dispatch(l.events[:n])
			}
			before := len(got)
			for at := start; at <= start+int64(timeout); at += int64(h) {
				l.fireTimers(at)
			}
			drain("after the end")
			if len(got) != before {
				t.Fatalf("%d more upstream queries after the race ended", len(got)-before)
			}
			if len(got) > tc.ups+maxRetransmits {
				t.Fatalf("%d upstream queries, want at most %d", len(got), tc.ups+maxRetransmits)
			}
			buf := make([]byte, 512)
			n, _, err := unix.Recvfrom(client, buf, unix.MSG_DONTWAIT)
			if err != nil {
				t.Fatalf("no reply for the client: %v", err)
			}
			var reply dns.Msg
			if err := reply.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			want := dns.RcodeSuccess
			if tc.answer < 0 {
				want = dns.RcodeServerFailure
			}
			if reply.Id != m.Id || reply.Rcode != want {
				t.Fatalf("client got ID %d rcode %d, want ID %d rcode %d", reply.Id, reply.Rcode, m.Id, want)
			}
			if l.active != 0 {
				t.Fatalf("%d queries still in flight", l.active)
			}
		})
	}
}

// rawUDP is a non-blocking UDP socket on 127.0.0.1, closed when the test ends.
func rawUDP(t *testing.T) (int, netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}
