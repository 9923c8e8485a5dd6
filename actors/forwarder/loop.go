package forwarder

import (
	"errors"
	"fmt"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"golang.org/x/sys/unix"
)

// Loop serves the UDP queries of one listener socket on one goroutine,
// without a goroutine, a channel or a runtime-poller registration per query.
//
// Why: on the 2-core nodes Spartan runs on, a goroutine per query plus one
// per upstream attempt spent most of each query's CPU in the scheduler and
// the runtime poller, and every hand-off between goroutines was a thread
// wake-up on the latency path (issue 7). The loop is a classic reactor: one
// epoll set holds the listener socket, an eventfd for Retire, and the
// upstream sockets of the queries in flight; the race of each query is a
// small state machine (loopQuery) driven by socket events and three timer
// queues, applying the same raceRules as the goroutine race.
//
// Every upstream query gets a random ID and a socket of its own with a fresh
// random source port (RFC 5452); the sockets are recycled without reusing
// ports (upsock.go), and handled with raw system calls (rawsys.go).
type Loop struct {
	f     *Forwarder
	ep    int      // epoll set
	epf   *os.File // ep, registered with the runtime poller
	wake  int      // eventfd written by Retire
	lis   *Socket  // nil once retired
	reply *ReplyPath
	epoch time.Time

	retire atomic.Bool
	keep   atomic.Bool // Stop: leave what is queued in the listener socket
	wakeMu sync.Mutex  // Retire's write vs the eventfd's close
	closed bool

	up     sockPool // upstream sockets, recycled (upsock.go)
	slots  []loopQuery
	free   []int32
	active int

	// Timers. Stall timers have each route's own hedge delay, which
	// changes over time: a heap. The entries of the other two queues have
	// (nearly) one delay, so each is in time order: a FIFO. (An expiry may
	// fire late, by the difference between two routes' hedge delays or when
	// upstream_timeout is lowered at run time; never early.)
	stallQ  timerHeap  // per attempt: no reply by its send time + the hedge delay
	expireQ timerQueue // per query still in flight at its first stall timer: upstream_timeout after it came
	graceQ  timerQueue // per answered query: stop reading its losers
	staleQ  timerHeap  // per refresh of an expired cache entry: the end of its wait (loopcache.go)

	buf    []byte     // scratch for one upstream datagram
	in     *recvBatch // client queries, read in batches (recvbatch.go)
	out    []byte     // scratch for one answer rendered from the cache
	kbuf   cache.KeyBuf
	key    cache.Query // the cache key of the query being accepted, in kbuf
	events [128]unix.EpollEvent
}

// Event tags, in EpollEvent.Fd; for upstream sockets EpollEvent.Pad holds
// the socket's index in the pool.
const (
	tagWake int32 = iota
	tagListener
	tagUpstream
)

// maxBatch bounds the client queries read per wake-up, so a flood on the
// listener cannot starve the replies of queries already in flight.
const maxBatch = 64

// NewLoop returns a loop serving the listener socket lis, which it takes a
// reference to. Replies of queries still in flight after Retire go out
// through reply.
func (f *Forwarder) NewLoop(lis *Socket, reply *ReplyPath) (*Loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	// The loop's goroutine waits for its epoll set through the runtime
	// poller (an epoll fd is readable when it has events), never in a
	// blocking epoll_wait: a goroutine blocked in a system call makes the
	// runtime's sysmon hand its P to another thread every 20 µs, which cost
	// more CPU than the loop saves.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, os.NewSyscallError("fcntl", err)
	}
	l := &Loop{f: f, ep: ep, epf: os.NewFile(uintptr(ep), "epoll"), wake: wake, reply: reply, epoch: time.Now(), buf: make([]byte, maxDatagram), in: newRecvBatch()}
	if f.Cache != nil {
		l.out = make([]byte, replyBufLen)
	}
	if err := l.add(wake, tagWake, 0); err != nil {
		l.closeFDs()
		return nil, err
	}
	if !lis.tryAcquire() {
		l.closeFDs()
		return nil, errors.New("listener socket already closed")
	}
	if err := l.add(lis.fd, tagListener, 0); err != nil {
		lis.Release()
		l.closeFDs()
		return nil, err
	}
	l.lis = lis
	return l, nil
}

func (l *Loop) add(fd int, tag int32, slot int32) error { return epollAdd(l.ep, fd, tag, slot) }

func (l *Loop) closeFDs() {
	l.wakeMu.Lock()
	defer l.wakeMu.Unlock()
	l.closed = true
	unix.Close(l.wake)
	_ = l.epf.Close()
}

// Retire makes the loop stop reading its listener socket: it reads what is
// already queued, releases the socket, and returns from Run once every
// query it accepted has been answered (losers are no longer read). Safe to
// call from any goroutine, more than once.
func (l *Loop) Retire() {
	if !l.retire.CompareAndSwap(false, true) {
		return
	}
	l.wakeMu.Lock()
	defer l.wakeMu.Unlock()
	if !l.closed { // else Run has ended: there is no one to wake
		var one = [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
}

// Stop is Retire without reading what is queued in the listener socket:
// for a socket another process also serves (socket activation, a reload),
// whatever waits there is that process's to answer. The queries already
// read are answered. Safe to call from any goroutine, more than once.
func (l *Loop) Stop() {
	l.keep.Store(true)
	l.Retire()
}

// now is the loop's monotonic clock in nanoseconds.
func (l *Loop) now() int64 { return int64(time.Since(l.epoch)) }

// Run serves until the loop is retired and its queries are answered.
func (l *Loop) Run() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("udp loop panic: %v", p)
		}
		l.shutdown()
	}()
	rc, err := l.epf.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	handle := func(uintptr) bool {
		n, errno := epollPoll(l.ep, l.events[:])
		if errno != 0 && errno != unix.EINTR {
			werr = os.NewSyscallError("epoll_pwait", errno)
			return true
		}
		if n <= 0 {
			return false // nothing ready: park until the poller says so
		}
		l.dispatch(l.events[:n])
		return true
	}
	var deadline time.Time
	for {
		if next := l.nextTimer(); next != deadline {
			deadline = next
			_ = l.epf.SetReadDeadline(deadline)
		}
		if err := rc.Read(handle); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("udp loop poll: %w", err)
		}
		if werr != nil {
			return werr
		}
		l.fireTimers(l.now())
		if l.retire.Load() {
			l.retireNow()
			if l.active == 0 {
				return nil
			}
		}
	}
}

// retireNow stops reading the listener socket, after reading what is
// already queued there, and stops reading losers: from now on the loop only
// waits for the queries that have no reply yet.
func (l *Loop) retireNow() {
	if l.lis != nil {
		if !l.keep.Load() {
			l.readListener()
		}
		// Out of the epoll set first: the socket stays open while others
		// hold it (the reply path), and must not keep waking the loop.
		epollDel(l.ep, l.lis.fd)
		l.lis.Release()
		l.lis = nil
	}
	for s := range l.slots {
		if q := &l.slots[s]; q.inUse && q.decided {
			l.freeQuery(int32(s))
		}
	}
}

// dispatch handles one batch of epoll events.
func (l *Loop) dispatch(events []unix.EpollEvent) {
	for i := range events {
		ev := &events[i]
		switch ev.Fd {
		case tagListener:
			l.readListener()
		case tagWake:
			var b [8]byte
			_, _ = unix.Read(l.wake, b[:])
		case tagUpstream:
			l.readUpstream(ev.Pad, ev.Events)
		}
	}
}

// shutdown frees every query (Run returns only when none is in flight, but
// a panic may leave some) and closes the loop's descriptors.
func (l *Loop) shutdown() {
	for i := range l.slots {
		if l.slots[i].inUse {
			l.freeQuery(int32(i))
		}
	}
	if l.lis != nil {
		l.lis.Release()
		l.lis = nil
	}
	l.closeSockets()
	l.closeFDs()
}

// readListener reads and starts up to maxBatch client queries; level
// triggering brings the loop back for the rest.
func (l *Loop) readListener() {
	if l.lis == nil {
		return
	}
	for read := 0; read < maxBatch; {
		n := l.in.read(l.lis.fd, maxBatch-read)
		for i := range n {
			l.accept(l.in.packet(i), &l.in.from[i])
		}
		if n < recvBatchLen {
			return // drained (or an error: nothing to read)
		}
		read += n
	}
}

// send writes a reply to a client: through the listener socket while the
// loop has it, else through the reply path (a restarted listener's).
func (l *Loop) send(b []byte, to *sockaddr) { l.sendAs(dnstap.ClientResponse, b, to) }

// sendAs is send with the kind the dnstap log gives the reply (a cached
// one is marked as such).
func (l *Loop) sendAs(kind dnstap.Kind, b []byte, to *sockaddr) {
	if t := l.f.Tap; t != nil {
		t.Message(kind, b, to.addrPort(), false)
	}
	if l.lis != nil {
		to.sendto(l.lis.fd, b)
		return
	}
	l.reply.send(b, to)
}
