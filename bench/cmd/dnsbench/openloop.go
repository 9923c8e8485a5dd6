package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec describes one open-loop run: queries are sent on a fixed
// schedule whatever the server does (unlike dnsperf's closed loop, a slow
// server cannot slow the sender down and hide its own latency).
type loadSpec struct {
	addr    string
	rate    int           // queries per second
	dur     time.Duration // sending time
	timeout time.Duration // a reply later than this after its query counts as lost
	sockets int           // source sockets, as many stub resolvers would use
	queries [][]byte      // pre-packed, ID 0
	events  []loadEvent   // actions at fixed offsets (freezing an upstream)
}

type loadEvent struct {
	at time.Duration
	fn func()
}

// loadRun holds per-query outcomes, indexed by query number; query i was
// scheduled at i/rate seconds, so its second is i/rate.
type loadRun struct {
	rate    int
	timeout time.Duration
	sendNs  []int64 // actual send time since start
	recvNs  []int64 // reply time since start, 0 = none
	rcode   []int32 // reply rcode, -1 = none
	replied atomic.Int64
}

const noReply = -1

// runOpenLoop sends spec.rate*spec.dur queries and waits spec.timeout for
// the last replies.
func runOpenLoop(ctx context.Context, spec loadSpec) (*loadRun, error) {
	total := int(float64(spec.rate) * spec.dur.Seconds())
	if total <= 0 || spec.sockets <= 0 || len(spec.queries) == 0 {
		return nil, fmt.Errorf("empty open-loop run")
	}
	run := &loadRun{rate: spec.rate, timeout: spec.timeout,
		sendNs: make([]int64, total), recvNs: make([]int64, total), rcode: make([]int32, total)}
	for i := range run.rcode {
		run.rcode[i] = noReply
	}
	conns := make([]*net.UDPConn, spec.sockets)
	// slots[s][id] = query number + 1 of the last query sent on socket s
	// with that ID; IDs only wrap after 65536 queries per socket, far more
	// than are in flight within one timeout.
	slots := make([][]int64, spec.sockets)
	raddr, err := net.ResolveUDPAddr("udp", spec.addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", spec.addr, err)
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for s := range conns {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, fmt.Errorf("open-loop socket: %w", err)
		}
		_ = c.SetReadBuffer(4 << 20)
		conns[s] = c
		slots[s] = make([]int64, 65536)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for s, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			receive(c, slots[s], run, start)
		}()
	}

	err = sendSchedule(ctx, spec, conns, slots, run, start, total)
	// Replies to the last queries may take up to timeout; stop waiting as
	// soon as every query has its reply, which for a healthy row is at once.
	drainEnd := time.Now().Add(spec.timeout)
	for run.replied.Load() < int64(total) && time.Now().Before(drainEnd) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return run, err
}

func sendSchedule(ctx context.Context, spec loadSpec, conns []*net.UDPConn, slots [][]int64, run *loadRun, start time.Time, total int) error {
	buf := make([]byte, 512)
	events := append([]loadEvent(nil), spec.events...)
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	interval := time.Second / time.Duration(spec.rate)
	for next := 0; next < total; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		el := time.Since(start)
		for len(events) > 0 && el >= events[0].at {
			go events[0].fn()
			events = events[1:]
		}
		due := int(el.Seconds()*float64(spec.rate)) + 1
		for ; next < total && next < due; next++ {
			s := next % len(conns)
			id := uint16(next / len(conns))
			q := spec.queries[next%len(spec.queries)]
			n := copy(buf, q)
			buf[0], buf[1] = byte(id>>8), byte(id)
			atomic.StoreInt64(&slots[s][id], int64(next)+1)
			atomic.StoreInt64(&run.sendNs[next], int64(time.Since(start)))
			// A send error (ECONNREFUSED from an earlier ICMP) is a lost
			// query, which is what the tables count.
			_, _ = conns[s].Write(buf[:n])
		}
		// Sleep to the next scheduled send; the catch-up loop above absorbs
		// oversleeping, so the average rate stays exact.
		wait := time.Duration(next)*interval - time.Since(start)
		if wait > 50*time.Microsecond {
			time.Sleep(wait)
		}
	}
	return nil
}

func receive(c *net.UDPConn, slot []int64, run *loadRun, start time.Time) {
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			continue // ECONNREFUSED while nothing listens: keep reading
		}
		now := int64(time.Since(start))
		if n < 12 || buf[2]&0x80 == 0 {
			continue
		}
		id := uint16(buf[0])<<8 | uint16(buf[1])
		i := atomic.LoadInt64(&slot[id]) - 1
		if i < 0 || atomic.LoadInt64(&run.recvNs[i]) != 0 {
			continue
		}
		atomic.StoreInt32(&run.rcode[i], int32(buf[3]&0x0f))
		atomic.StoreInt64(&run.recvNs[i], now)
		run.replied.Add(1)
	}
}

// latencies returns each query's latency in ns, +Inf (MaxInt64) for a
// query with no NOERROR reply within the timeout, for queries [from, to).
func (r *loadRun) latencies(from, to int) []int64 {
	out := make([]int64, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, r.latency(i))
	}
	return out
}

func (r *loadRun) latency(i int) int64 {
	recv := atomic.LoadInt64(&r.recvNs[i])
	if recv == 0 || atomic.LoadInt32(&r.rcode[i]) != 0 {
		return math.MaxInt64
	}
	l := recv - atomic.LoadInt64(&r.sendNs[i])
	if l > int64(r.timeout) {
		return math.MaxInt64
	}
	return l
}

// errors counts queries answered with a non-NOERROR rcode (SERVFAIL from
// a forwarder that gave up) in [from, to).
func (r *loadRun) errorReplies(from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		if c := atomic.LoadInt32(&r.rcode[i]); c != noReply && c != 0 {
			n++
		}
	}
	return n
}
