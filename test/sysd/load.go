package sysd

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// LoadOptions shape the load: open-loop UDP at a fixed rate over a few
// sockets, plus pipelined TCP clients, each at its own fixed rate.
type LoadOptions struct {
	Addr       netip.AddrPort
	Names      []string // asked in turn (A queries)
	UDPRate    int      // queries per second, over all UDP sockets
	UDPSockets int
	TCPClients int
	TCPRate    int           // queries per second per TCP client
	Timeout    time.Duration // a reply later than this counts as late (still answered)
}

// Report is what a load run saw.
type Report struct {
	Sent, Answered, Late, Lost int
	UDPLost, TCPLost           int // Lost, by transport
	TCPResent                  int // TCP queries sent again after their connection closed unanswered
	Latencies                  []time.Duration
	// Answers counts the A records answered, by address, for queries sent
	// after Load.Mark.
	Answers map[string]int
}

// Quantile returns the q-quantile of the latencies (0 without any).
func (r *Report) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

type pending struct {
	sent time.Time
	used bool
}

// Load runs until Stop.
type Load struct {
	opt  LoadOptions
	stop chan struct{}
	wg   sync.WaitGroup
	mark atomic.Int64 // UnixNano; replies to queries sent after it are counted by answer

	mu      sync.Mutex
	rep     Report
	answers map[string]int
}

// StartLoad starts the load.
func StartLoad(opt LoadOptions) (*Load, error) {
	if opt.Timeout == 0 {
		opt.Timeout = 3 * time.Second
	}
	l := &Load{opt: opt, stop: make(chan struct{}), answers: map[string]int{}}
	l.mark.Store(1<<63 - 1)
	for i := range opt.UDPSockets {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(opt.Addr))
		if err != nil {
			close(l.stop)
			return nil, err
		}
		_ = c.SetReadBuffer(1 << 20)
		l.wg.Add(1)
		go l.udp(c, i)
	}
	for i := range opt.TCPClients {
		l.wg.Add(1)
		go l.tcp(i)
	}
	return l, nil
}

// Mark starts counting replies by answer, for queries sent from now on.
func (l *Load) Mark() { l.mark.Store(time.Now().UnixNano()) }

// Stop stops sending, waits for the replies still due (up to the timeout)
// and returns the report.
func (l *Load) Stop() Report {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rep.Answers = l.answers
	return l.rep
}

func (l *Load) query(id uint16, name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	b, _ := m.Pack()
	return b
}

// record notes one reply to a query sent at sent.
func (l *Load) record(sent time.Time, reply []byte) {
	lat := time.Since(sent)
	var ip string
	if sent.UnixNano() > l.mark.Load() {
		var m dns.Msg
		if m.Unpack(reply) == nil {
			for _, rr := range m.Answer {
				if a, ok := rr.(*dns.A); ok {
					ip = a.A.String()
				}
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rep.Answered++
	if lat > l.opt.Timeout {
		l.rep.Late++
	}
	l.rep.Latencies = append(l.rep.Latencies, lat)
	if ip != "" {
		l.answers[ip]++
	}
}

func (l *Load) udp(c *net.UDPConn, idx int) {
	defer l.wg.Done()
	defer c.Close()
	var (
		mu    sync.Mutex
		slots [65536]pending
		rwg   sync.WaitGroup
		done  atomic.Bool
	)
	rwg.Add(1)
	go func() { // reader
		defer rwg.Done()
		buf := make([]byte, 4096)
		for {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if done.Load() {
						return
					}
					continue
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ECONNREFUSED: nobody listened for a moment (no socket activation)
			}
			if n < 12 {
				continue
			}
			id := binary.BigEndian.Uint16(buf)
			mu.Lock()
			p := slots[id]
			slots[id].used = false
			mu.Unlock()
			if p.used {
				l.record(p.sent, buf[:n])
			}
		}
	}()
	per := max(1, l.opt.UDPRate/max(1, l.opt.UDPSockets))
	pace := newPacer(per)
	seq := uint16(idx * 7919)
	sent := 0
	for {
		select {
		case <-l.stop:
			goto drain
		default:
		}
		pace.wait() // open loop: send on schedule whatever the replies do
		seq++
		mu.Lock()
		lost := slots[seq].used // its predecessor 65536 queries ago never came back
		slots[seq] = pending{sent: time.Now(), used: true}
		mu.Unlock()
		if lost {
			l.mu.Lock()
			l.rep.Lost++
			l.rep.UDPLost++
			l.mu.Unlock()
		}
		_, _ = c.Write(l.query(seq, l.opt.Names[sent%len(l.opt.Names)]))
		sent++
	}
drain:
	deadline := time.Now().Add(l.opt.Timeout)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := 0
		for i := range slots {
			if slots[i].used {
				left++
			}
		}
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	done.Store(true)
	rwg.Wait()
	mu.Lock()
	lost := 0
	for i := range slots {
		if slots[i].used {
			lost++
		}
	}
	mu.Unlock()
	l.mu.Lock()
	l.rep.Sent += sent
	l.rep.Lost += lost
	l.rep.UDPLost += lost
	l.mu.Unlock()
}

// tcpClient is one pipelined client: it writes queries at its rate
// without waiting for replies, reads replies as they come, and when the
// server closes the connection it reconnects and sends again what was not
// answered (as RFC 7766 clients do).
type tcpClient struct {
	l       *Load
	mu      sync.Mutex
	waiting map[uint16]time.Time
	names   map[uint16]string
	conn    net.Conn // nil while disconnected
	resent  int
	readers sync.WaitGroup
}

func (l *Load) tcp(idx int) {
	defer l.wg.Done()
	t := &tcpClient{l: l, waiting: map[uint16]time.Time{}, names: map[uint16]string{}}
	t.dial()
	pace := newPacer(l.opt.TCPRate)
	seq := uint16(idx*7717 + 1)
	sent := 0
loop:
	for {
		select {
		case <-l.stop:
			break loop
		default:
		}
		pace.wait()
		seq++
		name := l.opt.Names[sent%len(l.opt.Names)]
		t.mu.Lock()
		t.waiting[seq] = time.Now()
		t.names[seq] = name
		c := t.conn
		t.mu.Unlock()
		sent++
		if c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(frame(l.query(seq, name))); err != nil {
				t.drop(c)
			}
		}
		if t.dead() {
			t.dial()
		}
	}
	// Wait for the replies still due; reconnect if the server closes.
	deadline := time.Now().Add(l.opt.Timeout)
	for time.Now().Before(deadline) {
		t.mu.Lock()
		left := len(t.waiting)
		t.mu.Unlock()
		if left == 0 {
			break
		}
		if t.dead() {
			t.dial()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.mu.Lock()
	if t.conn != nil {
		_ = t.conn.Close()
	}
	lost := len(t.waiting)
	t.mu.Unlock()
	t.readers.Wait()
	l.mu.Lock()
	l.rep.Sent += sent
	l.rep.Lost += lost
	l.rep.TCPLost += lost
	l.rep.TCPResent += t.resent
	l.mu.Unlock()
}

func (t *tcpClient) dead() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conn == nil
}

func (t *tcpClient) drop(c net.Conn) {
	t.mu.Lock()
	if t.conn == c {
		t.conn = nil
	}
	t.mu.Unlock()
	_ = c.Close()
}

// dial connects (retrying for a second at most) and sends again every
// query not answered yet.
func (t *tcpClient) dial() {
	for range 100 {
		c, err := net.DialTimeout("tcp", t.l.opt.Addr.String(), time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.mu.Lock()
		t.conn = c
		var resend []byte
		for id := range t.waiting {
			resend = append(resend, frame(t.l.query(id, t.names[id]))...)
			t.resent++
		}
		t.mu.Unlock()
		t.readers.Add(1)
		go t.read(c)
		if len(resend) > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(resend); err != nil {
				t.drop(c)
			}
		}
		return
	}
}

func (t *tcpClient) read(c net.Conn) {
	defer t.readers.Done()
	defer t.drop(c)
	var hdr [2]byte
	buf := make([]byte, 65535)
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil || n < 12 {
			return
		}
		id := binary.BigEndian.Uint16(buf)
		t.mu.Lock()
		sent, ok := t.waiting[id]
		delete(t.waiting, id)
		delete(t.names, id)
		t.mu.Unlock()
		if ok {
			t.l.record(sent, buf[:n])
		}
	}
}

func frame(q []byte) []byte {
	f := make([]byte, 2+len(q))
	binary.BigEndian.PutUint16(f, uint16(len(q)))
	copy(f[2:], q)
	return f
}

// pacer schedules an open-loop sender: rate sends a second on a fixed
// timetable, whatever the replies do (a late send is not made up for by
// drifting the schedule).
type pacer struct {
	next     time.Time
	interval time.Duration
}

func newPacer(rate int) *pacer {
	return &pacer{next: time.Now(), interval: time.Second / time.Duration(max(1, rate))}
}

// wait sleeps until the next send is due and books the one after it.
func (p *pacer) wait() {
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
	p.next = p.next.Add(p.interval)
}
