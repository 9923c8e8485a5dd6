package hostile

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/dnstest"
	"github.com/spartan-dns/spartan/test/testkit"
)

// Answers of the in-process upstream: goodIP is the only right one, badIP
// marks every forged or invalid reply.
const (
	goodIP = "192.0.2.1"
	badIP  = "6.6.6.6"
)

// upstream is an in-process DNS server (UDP and TCP on one loopback port)
// whose behaviour is chosen by the first label of the query name. Hostile
// behaviours send something invalid first and, unless the name says "only",
// the right reply afterwards, so a forwarder that keeps listening for the
// valid reply answers goodIP.
type upstream struct {
	Addr netip.AddrPort
	udp  *net.UDPConn
	alt  *net.UDPConn // another socket on the same IP: replies "from another address"
	alt2 *net.UDPConn // the same port on another loopback IP: replies "from another IP"
	tcp  *net.TCPListener

	slowInflight, slowMax atomic.Int64
	// dripDone receives, for each "drip" reply, how long the dripping ran
	// before the forwarder hung up.
	dripDone chan time.Duration

	wg   sync.WaitGroup
	quit chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	ip, port := testkit.FreeAddr(t)
	addr := netip.AddrPortFrom(ip, uint16(port))
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("upstream udp: %v", err)
	}
	alt, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatalf("upstream alt udp: %v", err)
	}
	b := ip.As4()
	b[3] ^= 0x80
	alt2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(b), uint16(port))))
	if err != nil {
		t.Fatalf("upstream alt2 udp: %v", err)
	}
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("upstream tcp: %v", err)
	}
	up := &upstream{Addr: addr, udp: u, alt: alt, alt2: alt2, tcp: l, dripDone: make(chan time.Duration, 16), quit: make(chan struct{})}
	up.wg.Add(2)
	go up.serveUDP()
	go up.serveTCP()
	t.Cleanup(func() {
		close(up.quit)
		u.Close()
		alt.Close()
		alt2.Close()
		l.Close()
		up.wg.Wait()
	})
	return up
}

func behaviour(m *dns.Msg) string {
	if m == nil || len(m.Question) == 0 {
		return ""
	}
	return strings.SplitN(m.Question[0].Name, ".", 2)[0]
}

func answer(q *dns.Msg, ip string, mod func(*dns.Msg)) []byte {
	r := new(dns.Msg)
	r.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + ip)
	r.Answer = append(r.Answer, rr)
	if mod != nil {
		mod(r)
	}
	b, _ := r.Pack()
	return b
}

func junk(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// forgeries returns the invalid replies a behaviour sends before (or
// instead of) the right one.
func forgeries(kind string, q *dns.Msg) [][]byte {
	switch strings.TrimSuffix(kind, "only") {
	case "wrongid":
		return [][]byte{answer(q, badIP, func(r *dns.Msg) { r.Id ^= 0x5a5a })}
	case "wrongq":
		return [][]byte{answer(q, badIP, func(r *dns.Msg) {
			r.Question[0].Name = "other.example."
			r.Answer[0].Header().Name = "other.example."
		})}
	case "garbage":
		return [][]byte{junk(100)}
	case "short":
		return [][]byte{junk(7)}
	case "empty":
		return [][]byte{{}}
	case "noqr":
		return [][]byte{answer(q, badIP, func(r *dns.Msg) { r.Response = false })}
	case "huge":
		// Right ID, QR, the question, then tens of KB that are no records.
		h := answer(q, badIP, func(r *dns.Msg) { r.Answer = nil })
		h[7] = 200 // ANCOUNT 200 that the junk cannot satisfy
		return [][]byte{append(h, junk(60000)...)}
	case "all":
		return append(append(append(forgeries("wrongid", q), forgeries("garbage", q)...), forgeries("empty", q)...), forgeries("noqr", q)...)
	}
	return nil
}

func (u *upstream) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil {
			continue
		}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			u.handleUDP(q, from)
		}()
	}
}

func (u *upstream) handleUDP(q *dns.Msg, from netip.AddrPort) {
	kind := behaviour(q)
	switch {
	case kind == "silent":
		return
	case kind == "slow":
		u.trackSlow(func() { time.Sleep(300 * time.Millisecond) })
	case kind == "otheraddr" || kind == "otheraddronly":
		_, _ = u.alt.WriteToUDPAddrPort(answer(q, badIP, nil), from)
	case kind == "otherip":
		_, _ = u.alt2.WriteToUDPAddrPort(answer(q, badIP, nil), from)
	default:
		for _, f := range forgeries(kind, q) {
			_, _ = u.udp.WriteToUDPAddrPort(f, from)
		}
	}
	if strings.HasSuffix(kind, "only") {
		return
	}
	if kind != "ok" && kind != "slow" {
		time.Sleep(100 * time.Millisecond) // the forgery surely arrives first
	}
	_, _ = u.udp.WriteToUDPAddrPort(answer(q, goodIP, nil), from)
}

func (u *upstream) trackSlow(f func()) {
	n := u.slowInflight.Add(1)
	for {
		m := u.slowMax.Load()
		if n <= m || u.slowMax.CompareAndSwap(m, n) {
			break
		}
	}
	f()
	u.slowInflight.Add(-1)
}

func (u *upstream) serveTCP() {
	defer u.wg.Done()
	for {
		c, err := u.tcp.AcceptTCP()
		if err != nil {
			return
		}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			go func() {
				<-u.quit
				c.Close()
			}()
			var wmu sync.Mutex
			write := func(b []byte) error {
				wmu.Lock()
				defer wmu.Unlock()
				_, err := c.Write(b)
				return err
			}
			for {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				raw, err := dnstest.ReadFrame(c)
				if err != nil {
					return
				}
				q := new(dns.Msg)
				if q.Unpack(raw) != nil {
					continue
				}
				u.wg.Add(1)
				go func() {
					defer u.wg.Done()
					u.handleTCP(q, c, write)
				}()
			}
		}()
	}
}

func (u *upstream) handleTCP(q *dns.Msg, c *net.TCPConn, write func([]byte) error) {
	kind := behaviour(q)
	switch kind {
	case "silent":
		return
	case "slow":
		u.trackSlow(func() { time.Sleep(300 * time.Millisecond) })
	case "drip":
		// The right reply, one byte every 100 ms: ~6 s in all, far beyond
		// any sane upstream timeout.
		start := time.Now()
		for _, b := range dnstest.Frame(answer(q, goodIP, nil)) {
			if write([]byte{b}) != nil {
				break
			}
			select {
			case <-u.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		select {
		case u.dripDone <- time.Since(start):
		default:
		}
		return
	case "tcpreset":
		_ = c.SetLinger(0)
		_ = c.Close()
		return
	case "bigtxt":
		// A ~60 KB answer, to fill a client's socket buffer quickly.
		r := new(dns.Msg)
		r.SetReply(q)
		r.Compress = true
		for i := 0; i < 220; i++ {
			rr, _ := dns.NewRR(fmt.Sprintf(`%s 60 IN TXT "%03d%s"`, q.Question[0].Name, i, strings.Repeat("x", 240)))
			r.Answer = append(r.Answer, rr)
		}
		b, _ := r.Pack()
		_ = write(dnstest.Frame(b))
		return
	case "tcphuge":
		h := answer(q, badIP, func(r *dns.Msg) { r.Answer = nil })
		h[7] = 200
		body := append(h, junk(65535-len(h))...)
		_ = write(dnstest.Frame(body))
		return
	default:
		for _, f := range forgeries(kind, q) {
			if len(f) > 65535 {
				f = f[:65535]
			}
			_ = write(dnstest.Frame(f))
		}
	}
	if strings.HasSuffix(kind, "only") {
		return
	}
	if kind != "ok" && kind != "slow" {
		time.Sleep(100 * time.Millisecond)
	}
	_ = write(dnstest.Frame(answer(q, goodIP, nil)))
}
