// Package ctl is the control-socket actor behind `spartanctl tree`, `kill`
// and `upstreams`, and the client side of its protocol.
//
// # Protocol
//
// The actor listens on a unix stream socket (cfg.CtlSocket, mode 0600: only
// root, or whoever runs the daemon, may kill actors). A client sends one
// request per line, a JSON object, and reads one response per line, a JSON
// object, in order; it may send several requests on one connection. A
// request line is at most MaxRequest bytes; a connection that sends nothing
// for IdleTimeout is closed.
//
//	{"cmd": "tree"}                      → {"ok": true, "tree": {supervisor.Node}}
//	{"cmd": "kill", "path": "/spartan/dns"} → {"ok": true}
//	{"cmd": "upstreams"}                 → {"ok": true, "upstreams": [Upstream, ...]}
//	{"cmd": "cache"}                     → {"ok": true, "cache": {cache.Stats}}
//	{"cmd": "cache_flush", "name": "example.com"} → {"ok": true, "flushed": N}
//	{"cmd": "reload"}                    → {"ok": true, "pid": NEW_PID}
//
// cache_flush without a name empties the cache; with one, it removes that
// name and every name under it. Both fail with "cache_off" when the
// configuration turns the cache off.
//
// reload is SIGHUP's reload (docs/ARCHITECTURE.md, "Reload and upgrade"),
// answered only when it is over: "ok" with the new process's PID once that
// process serves (this process then stops, and closes the connection), or
// "reload_failed" naming why while this process keeps serving. It is the
// unit's ExecReload, so that `systemctl reload` waits for the hand-over and
// fails when the reload does.
//
// A failed request gets {"ok": false, "code": CODE, "error": "message"}
// with CODE one of "bad_request", "unknown_command", "no_such_path",
// "not_running", "internal", "cache_off", "reload_failed". A line that is too long or not JSON gets a
// bad_request response and the connection is closed.
//
// A kill of the ctl actor itself or of one of its ancestors is answered
// before it takes effect, so the client always learns that its kill was
// accepted.
package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/supervisor"
)

// Protocol limits.
const (
	MaxRequest  = 4096             // bytes in one request line, newline included
	IdleTimeout = 30 * time.Second // a connection idle this long is closed
	maxConns    = 16               // concurrent connections; more are closed at once
	writeTimout = 5 * time.Second
)

// Commands.
const (
	CmdTree       = "tree"
	CmdKill       = "kill"
	CmdUpstreams  = "upstreams"
	CmdCache      = "cache"
	CmdCacheFlush = "cache_flush"
	CmdReload     = "reload"
)

// Error codes of a failed Response.
const (
	CodeBadRequest     = "bad_request"
	CodeUnknownCommand = "unknown_command"
	CodeNoSuchPath     = "no_such_path"
	CodeNotRunning     = "not_running"
	CodeInternal       = "internal"
	CodeCacheOff       = "cache_off"
	CodeReloadFailed   = "reload_failed"
)

// Request is one request line.
type Request struct {
	Cmd  string `json:"cmd"`
	Path string `json:"path,omitempty"` // kill
	Name string `json:"name,omitempty"` // cache_flush: a domain name; "" is everything
}

// Response is one response line.
type Response struct {
	OK        bool             `json:"ok"`
	Code      string           `json:"code,omitempty"`
	Error     string           `json:"error,omitempty"`
	Tree      *supervisor.Node `json:"tree,omitempty"`
	Upstreams []Upstream       `json:"upstreams,omitempty"`
	Cache     *cache.Stats     `json:"cache,omitempty"`
	Flushed   *int             `json:"flushed,omitempty"`
	PID       int              `json:"pid,omitempty"` // reload: the new process
}

// Upstream is what `spartanctl upstreams` shows for one upstream. Counters
// are totals since the daemon started; Score is the decaying failure score
// the forwarder chooses upstreams by (0 is healthy) and Rank its whole part.
type Upstream struct {
	Address     string   `json:"address"`
	Routes      []string `json:"routes"` // "default", "mesos", or a forward zone
	Successes   uint64   `json:"successes"`
	Failures    uint64   `json:"failures"`
	Stalls      uint64   `json:"stalls"`
	LateReplies uint64   `json:"late_replies"`
	// Latency of successful replies, in milliseconds; 0 when none yet. The
	// quantiles are estimates interpolated inside histogram buckets.
	LatencyMeanMs float64 `json:"latency_mean_ms"`
	LatencyP50Ms  float64 `json:"latency_p50_ms"`
	LatencyP99Ms  float64 `json:"latency_p99_ms"`
	Score         float64 `json:"score"`
	Rank          int     `json:"rank"`
}

// Error is a failed Response seen by a client.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ErrConnect matches (errors.Is) every failure to reach the socket
// (missing, refused, permission denied): the daemon is not there to ask.
var ErrConnect = errors.New("cannot connect")

// ConnectError is the error of Call when the socket cannot be reached.
type ConnectError struct {
	Path string
	Err  error
}

func (e *ConnectError) Error() string { return "cannot connect to " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the dial error.
func (e *ConnectError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrConnect) true.
func (e *ConnectError) Is(target error) bool { return target == ErrConnect }

// Cause is the bare reason, e.g. "no such file or directory".
func (e *ConnectError) Cause() string {
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		return se.Err.Error()
	}
	return e.Err.Error()
}

// Call sends one request to the control socket at path and returns the
// response. A failed response is returned as *Error.
func Call(ctx context.Context, path string, req Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &ConnectError{Path: path, Err: err}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()

	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if _, err := c.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", path, err)
	}
	r := bufio.NewReader(c)
	resp, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("read response from %s: %w", path, err)
	}
	var out Response
	if err := json.Unmarshal(resp, &out); err != nil {
		return nil, fmt.Errorf("decode response from %s: %w", path, err)
	}
	if !out.OK {
		return &out, &Error{Code: out.Code, Msg: out.Error}
	}
	return &out, nil
}
