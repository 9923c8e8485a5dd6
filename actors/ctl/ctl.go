package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
)

// Tree is what the actor needs of the supervision tree.
type Tree interface {
	Snapshot() supervisor.Node
	Kill(path string) error
}

// Actor is the control-socket actor. The value outlives restarts; each
// Serve binds the socket afresh.
type Actor struct {
	socket string
	self   string // the actor's own tree path, e.g. "/spartan/api/ctl"
	tree   Tree
	store  *state.Store
	cache  Cache
	reload Reloader
	log    zerolog.Logger

	takeOver bool // the next listen takes the path over (WithTakeOver)
}

// Reloader runs one reload to its end (cmd/spartan): on success it returns
// the new process's PID and handOver, which the actor calls once the client
// has its answer, to stop this process; on error this process goes on.
type Reloader func() (pid int, handOver func(), err error)

// WithTakeOver makes the actor's first listen take the socket path over at
// once, from the process this one replaces (a reload), instead of waiting
// for that process to give it up: spartanctl then never finds the path
// missing between the two. Later restarts of the actor wait as usual, so
// that the replaced process, should its own ctl actor restart meanwhile,
// cannot take the path back.
func (a *Actor) WithTakeOver() *Actor {
	a.takeOver = true
	return a
}

// WithReload makes the actor answer the reload command with r and returns it.
func (a *Actor) WithReload(r Reloader) *Actor {
	a.reload = r
	return a
}

// Cache is what the actor needs of the answer cache.
type Cache interface {
	Stats() cache.Stats
	Flush(name string) (int, error)
}

// WithCache makes the actor answer the cache commands from c (nil: the
// cache is off) and returns it.
func (a *Actor) WithCache(c Cache) *Actor {
	a.cache = c
	return a
}

// New returns the control-socket actor serving socket. self is the actor's
// own path in tree: kills of it or of an ancestor are answered first.
func New(socket, self string, tree Tree, store *state.Store, log zerolog.Logger) *Actor {
	return &Actor{socket: socket, self: self, tree: tree, store: store, log: log}
}

func (a *Actor) String() string { return "ctl " + a.socket }

// Serve implements suture.Service.
func (a *Actor) Serve(ctx context.Context) error {
	ln, err := a.listen(ctx)
	if err != nil {
		return err
	}
	ours, _ := os.Stat(a.socket)
	// The path is removed before the listener closes, once, and only while
	// it is still our socket: a reload's new process may have taken it over
	// (WithTakeOver), and removing its socket would leave spartanctl nothing
	// to connect to for that process's whole life. Once we have closed, the
	// process of a reload may bind it at once.
	release := sync.OnceFunc(func() {
		if fi, err := os.Stat(a.socket); err == nil && ours != nil && os.SameFile(fi, ours) {
			_ = os.Remove(a.socket)
		}
		_ = ln.Close()
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	// On cancel: stop accepting and cut every connection, so Serve returns
	// at once even with a client sitting idle on its connection.
	stop := context.AfterFunc(ctx, func() {
		release()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer func() {
		stop()
		release()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	a.log.Debug().Str("socket", a.socket).Msg("control socket serving")

	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("ctl accept %s: %w", a.socket, err)
		}
		mu.Lock()
		if len(conns) >= maxConns || ctx.Err() != nil {
			mu.Unlock()
			_ = c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			_ = c.Close()
		}()
	}
}

// listen binds the socket under a temporary name, restricts it to 0600 and
// renames it into place, so that the socket is never reachable by others,
// even for an instant.
func (a *Actor) listen(ctx context.Context) (*net.UnixListener, error) {
	dir := filepath.Dir(a.socket)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ctl socket directory: %w", err)
	}
	// During a reload the process we replace serves the socket until it
	// exits: take it over (once, WithTakeOver), or wait for it (bounded)
	// rather than crash-looping.
	takeOver := a.takeOver
	a.takeOver = false
	for wait := 0; !takeOver; wait++ {
		err := removeStale(a.socket)
		if err == nil {
			break
		}
		if !errors.Is(err, errServed) || wait >= servedWaits {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(servedPoll):
		}
	}
	if fi, err := os.Lstat(a.socket); takeOver && err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("ctl socket %s: exists and is not a socket; not replacing it", a.socket)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", a.socket, os.Getpid())
	_ = os.Remove(tmp)
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("ctl listen %s: %w", tmp, err)
	}
	ln := l.(*net.UnixListener)
	// We remove the socket ourselves: after the rename the listener's own
	// name is stale.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("ctl chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, a.socket); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("ctl socket %s: %w", a.socket, err)
	}
	return ln, nil
}

// errServed: the socket path answers; another process serves it.
var errServed = errors.New("another process is serving it")

// How long listen waits for another process to give up the socket (a
// reload's old process answering what it holds): servedWaits x servedPoll.
const (
	servedPoll  = 50 * time.Millisecond
	servedWaits = 200
)

// removeStale removes a socket left behind by a previous process. It
// refuses to remove anything that is not a socket, or a socket someone
// still answers on (another daemon).
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ctl socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("ctl socket %s: exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, 100*time.Millisecond); err == nil {
		_ = c.Close()
		return fmt.Errorf("ctl socket %s: %w", path, errServed)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ctl remove stale socket %s: %w", path, err)
	}
	return nil
}

// serveConn answers requests on one connection until the client closes,
// idles, or sends a bad line.
func (a *Actor) serveConn(c net.Conn) {
	r := bufio.NewReaderSize(c, MaxRequest)
	for {
		_ = c.SetReadDeadline(time.Now().Add(IdleTimeout))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			a.reply(c, fail(CodeBadRequest, fmt.Sprintf("request longer than %d bytes", MaxRequest)))
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(bytes.TrimSpace(line)) > 0 {
				// A last request without its newline is still a request.
				a.handle(c, line)
			}
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !a.handle(c, line) {
			return
		}
	}
}

// handle answers one request line; false means close the connection.
func (a *Actor) handle(c net.Conn, line []byte) bool {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		a.reply(c, fail(CodeBadRequest, "request is not a JSON object: "+err.Error()))
		return false
	}
	switch req.Cmd {
	case CmdTree:
		n := a.tree.Snapshot()
		return a.reply(c, Response{OK: true, Tree: &n})
	case CmdUpstreams:
		return a.reply(c, Response{OK: true, Upstreams: Upstreams(a.store.Load())})
	case CmdKill:
		return a.kill(c, req.Path)
	case CmdCache, CmdCacheFlush:
		return a.reply(c, a.cacheCmd(req))
	case CmdReload:
		return a.reloadCmd(c)
	default:
		return a.reply(c, fail(CodeUnknownCommand, fmt.Sprintf("unknown command %q (want tree, kill, upstreams, cache, cache_flush or reload)", req.Cmd)))
	}
}

// reloadCmd answers when the reload is over; after a hand-over this
// process stops, so the connection ends with the answer.
func (a *Actor) reloadCmd(c net.Conn) bool {
	if a.reload == nil {
		return a.reply(c, fail(CodeInternal, "this daemon cannot reload (no reloader)"))
	}
	pid, handOver, err := a.reload()
	if err != nil {
		return a.reply(c, fail(CodeReloadFailed, err.Error()))
	}
	a.reply(c, Response{OK: true, PID: pid})
	handOver()
	return false
}

func (a *Actor) cacheCmd(req Request) Response {
	if a.cache == nil {
		return fail(CodeCacheOff, "the cache is off (cache.enabled is false)")
	}
	if req.Cmd == CmdCache {
		s := a.cache.Stats()
		return Response{OK: true, Cache: &s}
	}
	n, err := a.cache.Flush(req.Name)
	if err != nil {
		return fail(CodeBadRequest, fmt.Sprintf("cache flush %q: %v", req.Name, err))
	}
	return Response{OK: true, Flushed: &n}
}

func (a *Actor) kill(c net.Conn, path string) bool {
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if path == "" || path[0] != '/' {
		return a.reply(c, fail(CodeBadRequest, fmt.Sprintf("kill: path %q must be absolute, e.g. /spartan/dns", path)))
	}
	if a.self != "" && (path == a.self || strings.HasPrefix(a.self, path+"/")) {
		// Killing ourselves cancels this very connection: answer first. The
		// node is running (we run under it), so Kill will take it.
		a.log.Warn().Str("path", path).Msg("kill of the control socket or an ancestor requested")
		a.reply(c, Response{OK: true})
		if err := a.tree.Kill(path); err != nil {
			a.log.Error().Err(err).Str("path", path).Msg("kill after reply failed")
		}
		return false
	}
	err := a.tree.Kill(path)
	switch {
	case err == nil:
		return a.reply(c, Response{OK: true})
	case errors.Is(err, supervisor.ErrNoSuchPath):
		return a.reply(c, fail(CodeNoSuchPath, fmt.Sprintf("no node at %s (see spartanctl tree)", path)))
	case errors.Is(err, supervisor.ErrNotRunning):
		return a.reply(c, fail(CodeNotRunning, fmt.Sprintf("%s is not running now (restarting or in backoff); try again", path)))
	default:
		return a.reply(c, fail(CodeInternal, err.Error()))
	}
}

func fail(code, msg string) Response { return Response{Code: code, Error: msg} }

// reply writes one response line; false means the connection is unusable.
func (a *Actor) reply(c net.Conn, resp Response) bool {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(fail(CodeInternal, "encode response: "+err.Error()))
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimout))
	_, err = c.Write(append(b, '\n'))
	return err == nil
}

// Upstreams describes every upstream of snap, sorted by address.
func Upstreams(snap *state.Snapshot) []Upstream {
	routes := map[*state.Upstream][]string{}
	addRoute := func(r *state.Route) {
		if r == nil {
			return
		}
		for _, u := range r.Upstreams {
			routes[u] = append(routes[u], r.Name)
		}
	}
	addRoute(snap.Default)
	addRoute(snap.Mesos)
	for _, z := range snap.Zones {
		addRoute(z.Route)
	}
	out := make([]Upstream, 0, len(snap.Upstreams))
	for _, u := range snap.Upstreams {
		cum, n, sum := u.Latency.Snapshot()
		e := Upstream{
			Address:     u.Addr.String(),
			Routes:      routes[u],
			Successes:   u.Successes.Load(),
			Failures:    u.Failures.Load(),
			Stalls:      u.Stalls.Load(),
			LateReplies: u.LateReplies.Load(),
			Score:       u.Score(),
			Rank:        u.Rank(),
		}
		if e.Routes == nil {
			e.Routes = []string{}
		}
		if n > 0 {
			e.LatencyMeanMs = sum / float64(n) * 1000
			e.LatencyP50Ms = Quantile(0.5, cum, n) * 1000
			e.LatencyP99Ms = Quantile(0.99, cum, n) * 1000
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// Quantile estimates the q-quantile (0..1) of a cumulative histogram the
// way Prometheus' histogram_quantile does: linear interpolation inside the
// bucket that holds it, 0 as the lower bound of the first bucket, and the
// highest finite bound for anything in the +Inf bucket. count includes +Inf.
func Quantile(q float64, cumulative map[float64]uint64, count uint64) float64 {
	if count == 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(cumulative))
	for b := range cumulative {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(count)
	lower, below := 0.0, uint64(0)
	for _, b := range bounds {
		c := cumulative[b]
		if float64(c) >= rank && c > below {
			return lower + (b-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = b, c
	}
	return lower
}
