package httpapi

import (
	"syscall"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
	"unicode"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
)

// Server timeouts. A /v1 lookup waits at most upstream_timeout (and an SRV
// lookup a few of them), so WriteTimeout leaves room for that.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = time.Second
	// maxSRVTargets bounds the lookups one /v1/services request makes.
	maxSRVTargets = 64
)

// Options configures the HTTP actor.
type Options struct {
	Addr      string // http_listen, "ip:port"
	Version   string // for /v1/version
	Store     *state.Store
	Forwarder *forwarder.Forwarder
	Metrics   *Metrics
	// Pprof serves /debug/pprof/ (config http_pprof). Off by default: any
	// local process, host-network containers included, could otherwise
	// burn the node's CPU with a profile or read query names in a heap.
	Pprof bool
}

// Server is the HTTP actor. The value outlives restarts; each Serve binds
// the address afresh.
type Server struct {
	opts    Options
	log     zerolog.Logger
	handler http.Handler
}

// New returns the HTTP actor.
func New(opts Options, log zerolog.Logger) *Server {
	s := &Server{opts: opts, log: log}
	s.handler = s.routes()
	return s
}

func (s *Server) String() string { return "http " + s.opts.Addr }

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve implements suture.Service.
func (s *Server) Serve(ctx context.Context) error {
	// SO_REUSEPORT: during a reload the next process binds the same
	// address while we still serve it.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.opts.Addr, err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          stdlog.New(s.log, "http: ", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Debug().Str("addr", ln.Addr().String()).Msg("http serving")

	select {
	case err := <-errc:
		return fmt.Errorf("http serve %s: %w", s.opts.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return ctx.Err()
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	get := func(pattern string, h http.HandlerFunc) {
		mux.Handle("GET "+pattern, h)
		// The same path with any other method: a JSON 405, not the mux's
		// plain-text one.
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		})
	}
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Metrics.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		})
	}
	// Profiles, for operators chasing CPU or memory on a live node, only
	// when the config asks for them (http_pprof).
	if s.opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	get("/v1/version", s.version)
	get("/v1/hosts/{host}", s.hosts)
	get("/v1/services/{service}", s.services)
	get("/v1/records", s.records)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": "encode: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Service string
		Version string
	}{"Spartan", s.opts.Version})
}

// Host is one entry of /v1/hosts.
type Host struct {
	Host string `json:"host"`
	IP   string `json:"ip"`
}

// Service is one entry of /v1/services.
type Service struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Service string `json:"service"`
	IP      string `json:"ip"`
}

// Record is one entry of /v1/records.
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"`
}

// lookupError carries the HTTP status a failed lookup maps to.
type lookupError struct {
	status int
	msg    string
}

func (e *lookupError) Error() string { return e.msg }

func statusOf(err error) int {
	var le *lookupError
	if errors.As(err, &le) {
		return le.status
	}
	return http.StatusBadGateway
}

// validName checks a name from a URL and returns it as an FQDN.
func validName(name string) (string, bool) {
	if name == "" || len(name) > 253 || strings.IndexFunc(name, func(r rune) bool {
		return r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		return "", false
	}
	fqdn := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
		return "", false
	}
	return fqdn, true
}

// query resolves one question through Spartan's own routing, as a client
// of the listeners would: it takes a handler_limit slot, and retries over
// TCP when the UDP-sized reply is truncated.
func (s *Server) query(name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	q, err := m.Pack()
	if err != nil {
		return nil, &lookupError{http.StatusBadRequest, fmt.Sprintf("bad name %q: %v", name, err)}
	}
	f := s.opts.Forwarder
	snap := f.Begin()
	if snap == nil {
		return nil, &lookupError{http.StatusServiceUnavailable, "too many queries in flight"}
	}
	defer f.End()
	var rep dns.Msg
	for _, tcp := range []bool{false, true} {
		raw := f.Answer(snap, q, tcp)
		if raw == nil {
			return nil, &lookupError{http.StatusBadGateway, fmt.Sprintf("%s %s: no reply", name, dns.TypeToString[qtype])}
		}
		if err := rep.Unpack(raw); err != nil {
			return nil, &lookupError{http.StatusBadGateway, fmt.Sprintf("%s %s: bad reply: %v", name, dns.TypeToString[qtype], err)}
		}
		if !rep.Truncated {
			break
		}
	}
	switch rep.Rcode {
	case dns.RcodeSuccess:
		return &rep, nil
	case dns.RcodeNameError:
		return nil, &lookupError{http.StatusNotFound, name + ": no such name (NXDOMAIN)"}
	default:
		return nil, &lookupError{http.StatusBadGateway, fmt.Sprintf("%s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[rep.Rcode])}
	}
}
