package masters

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"
)

// zkSessionTimeout is what the watcher asks ZooKeeper for. Short enough that
// an expired session (after a partition) is noticed quickly, long enough to
// ride out a server restart without losing the session.
const zkSessionTimeout = 4 * time.Second

// sessionSettle is how long the watcher waits after a new session before
// reading. go-zookeeper v1.0.4 re-registers the old watches (SetWatches)
// right after the "has session" event, reading the last zxid while the new
// receive loop may be writing it: a data race (go-zookeeper/zk PR #35, not
// merged) that a read issued at once would provoke: a response to it
// updates the zxid concurrently. In practice a torn or stale zxid only makes
// the server re-send notifications, but it fails -race builds, so the watcher
// keeps its requests out of that window: nothing is sent before the first
// session, nothing while disconnected, and after a reconnect the read waits
// this long. Real time, not the injected clock: a fixed pause, not part of
// the poll schedule.
const sessionSettle = 100 * time.Millisecond

// masterInfoPrefix marks the znodes Mesos masters register with JSON
// MasterInfo. Mesos also keeps log_replicas and (old) protobuf info_*
// children, which are ignored.
const masterInfoPrefix = "json.info_"

// zookeeperWatcher reads the Mesos masters from ZooKeeper and keeps watches
// on the mesos path and on every json.info_* child, so a change is reported
// within one round trip. The poll schedule (normal / fail interval) still
// applies as a safety net.
type zookeeperWatcher struct {
	base
	servers        []string
	mesosPath      string
	sessionTimeout time.Duration
}

func newZookeeper(b base, servers []string, mesosPath string) *zookeeperWatcher {
	mesosPath = strings.TrimSpace(mesosPath)
	if mesosPath == "" {
		mesosPath = "/mesos"
	}
	if !strings.HasPrefix(mesosPath, "/") {
		mesosPath = "/" + mesosPath
	}
	return &zookeeperWatcher{
		base:           b,
		servers:        slices.Clone(servers),
		mesosPath:      path.Clean(mesosPath),
		sessionTimeout: zkSessionTimeout,
	}
}

// Serve connects, reads, and re-reads on every watch event, on every new
// session (reconnect, or a fresh session after expiry) and on the poll
// schedule, until ctx ends.
func (w *zookeeperWatcher) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watch goroutines of this run

	var last []netip.Addr
	var servers []string
	for {
		var err error
		servers, err = w.resolveServers(ctx)
		if err == nil {
			break
		}
		next := w.report(ctx, nil, err, &last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.clock.After(next):
		}
	}

	// A callback rather than the event channel: the library drops events
	// when that channel is full, and a lost "has session" would delay the
	// re-read after a reconnect until the next poll.
	sessionUp := make(chan struct{}, 1)
	onEvent := func(ev zk.Event) {
		if ev.Type == zk.EventSession && ev.State == zk.StateHasSession {
			select {
			case sessionUp <- struct{}{}:
			default:
			}
		}
	}
	zlog := &zkLogger{log: w.log.With().Str("component", "zk").Logger()}
	defer zlog.detach()
	conn, _, err := zk.Connect(servers, w.sessionTimeout,
		zk.WithLogger(zlog),
		zk.WithEventCallback(onEvent))
	if err != nil {
		return fmt.Errorf("zookeeper connect %v: %w", servers, err)
	}
	// Close unblocks a read that waits on a dead server as soon as ctx
	// ends. It runs in the background because it waits up to a second for
	// the server to acknowledge, and Serve must return promptly.
	stop := context.AfterFunc(ctx, conn.Close)
	defer func() {
		if stop() {
			go conn.Close()
		}
	}()

	ws := &watchSet{active: map[string]bool{}, changed: make(chan struct{}, 1)}
	// The first read waits for the first session, so no request is queued
	// before it: the library then re-registers no watches on that
	// connection (see sessionSettle). A server that is down at start is
	// reported at the fail interval.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-sessionUp:
	case <-w.clock.After(w.fail):
	}
	for {
		// Drain a pending change signal: this read covers it.
		select {
		case <-ws.changed:
		default:
		}
		var ips []netip.Addr
		var err error
		if conn.State() == zk.StateHasSession {
			ips, err = w.read(ctx, conn, ws)
		} else {
			// Requests made now would wait in the library's queue and go
			// out the instant a new connection is up, racing its watch
			// re-registration (see sessionSettle). The new session
			// triggers the read instead.
			err = fmt.Errorf("zookeeper: not connected to %v (%s)", servers, conn.State())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tick := w.clock.After(w.report(ctx, ips, err, &last))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ws.changed:
		case <-tick:
		case <-sessionUp:
			w.log.Debug().Int64("session", conn.SessionID()).Msg("zookeeper session established")
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(sessionSettle):
			}
		}
	}
}

// resolveServers turns zookeeper_servers into IP:port through the Lookup,
// for the same reason as everywhere else: the system resolver is Spartan.
func (w *zookeeperWatcher) resolveServers(ctx context.Context) ([]string, error) {
	if len(w.servers) == 0 {
		return nil, errors.New("zookeeper_servers is empty")
	}
	var out []string
	var errs []error
	for _, s := range w.servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			host, port = strings.Trim(s, "[]"), "2181"
		}
		ips, err := resolveHost(ctx, w.lookup, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("zookeeper server %q: %w", s, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.String(), port))
		}
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		w.log.Warn().Err(err).Msg("skipping zookeeper server")
	}
	return out, nil
}

// read lists the mesos path and reads every json.info_* child, setting a
// watch on each unless one is already in place: the zk library keeps every
// watch channel until it fires, so re-watching on each safety-net poll
// would pile them up.
func (w *zookeeperWatcher) read(ctx context.Context, conn *zk.Conn, ws *watchSet) ([]netip.Addr, error) {
	var children []string
	var err error
	key := "children:" + w.mesosPath
	if ws.need(key) {
		var ch <-chan zk.Event
		children, _, ch, err = conn.ChildrenW(w.mesosPath)
		if err == nil {
			ws.add(ctx, key, ch)
		}
	} else {
		children, _, err = conn.Children(w.mesosPath)
	}
	if errors.Is(err, zk.ErrNoNode) {
		w.watchCreation(ctx, conn, ws)
		return nil, fmt.Errorf("zookeeper: %s does not exist", w.mesosPath)
	}
	if err != nil {
		return nil, fmt.Errorf("zookeeper: list %s: %w", w.mesosPath, err)
	}

	slices.Sort(children)
	var ips []netip.Addr
	var hosts []string
	for _, child := range children {
		if !strings.HasPrefix(child, masterInfoPrefix) {
			continue
		}
		p := path.Join(w.mesosPath, child)
		data, err := w.get(ctx, conn, ws, p)
		if errors.Is(err, zk.ErrNoNode) {
			// Gone since the listing; the children watch has fired.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("zookeeper: get %s: %w", p, err)
		}
		ip, host, err := ParseMasterInfo(data)
		if err != nil {
			return nil, fmt.Errorf("zookeeper: %s: %w", p, err)
		}
		if host != "" {
			hosts = append(hosts, host)
		} else {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 && len(hosts) == 0 {
		return nil, fmt.Errorf("zookeeper: no %s* masters under %s", masterInfoPrefix, w.mesosPath)
	}
	resolved, err := w.resolveAll(ctx, hosts)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	return append(ips, resolved...), nil
}

func (w *zookeeperWatcher) get(ctx context.Context, conn *zk.Conn, ws *watchSet, p string) ([]byte, error) {
	key := "data:" + p
	if !ws.need(key) {
		data, _, err := conn.Get(p)
		return data, err
	}
	data, _, ch, err := conn.GetW(p)
	if err == nil {
		ws.add(ctx, key, ch)
	}
	return data, err
}

// watchCreation sets an exists watch on a missing mesos path, so the masters
// show up as soon as Mesos creates it rather than at the next poll.
func (w *zookeeperWatcher) watchCreation(ctx context.Context, conn *zk.Conn, ws *watchSet) {
	key := "exists:" + w.mesosPath
	if !ws.need(key) {
		return
	}
	exists, _, ch, err := conn.ExistsW(w.mesosPath)
	if err != nil {
		return
	}
	ws.add(ctx, key, ch)
	if exists {
		// Created between the listing and now.
		ws.signal()
	}
}

// watchSet tracks which watches are armed. Each armed watch has a goroutine
// that, when the watch fires (a change, or ErrSessionExpired / ErrClosing
// from the library), forgets the watch and then signals changed, so the read
// the signal triggers arms it again.
type watchSet struct {
	mu      sync.Mutex
	active  map[string]bool
	changed chan struct{}
}

func (s *watchSet) need(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.active[key]
}

func (s *watchSet) add(ctx context.Context, key string, ch <-chan zk.Event) {
	if ch == nil {
		return
	}
	s.mu.Lock()
	s.active[key] = true
	s.mu.Unlock()
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		s.mu.Lock()
		delete(s.active, key)
		s.mu.Unlock()
		s.signal()
	}()
}

func (s *watchSet) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// zkLogger sends the zk library's messages (connects, reconnects, dropped
// connections) to zerolog at debug level; read failures are logged by the
// watcher itself, at warn. Once Serve has returned it drops them: the
// library's goroutines wind down in the background and must not log as if
// this run were still alive.
type zkLogger struct {
	log      zerolog.Logger
	mu       sync.RWMutex
	detached bool
}

func (l *zkLogger) Printf(format string, args ...any) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.detached {
		l.log.Debug().Msgf(format, args...)
	}
}

func (l *zkLogger) detach() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.detached = true
}
