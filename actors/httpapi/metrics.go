// Package httpapi is the HTTP actor: Prometheus metrics on /metrics and the
// /v1 API (version, hosts, services, local records).
//
// The /v1 lookups go through the forwarder exactly as a client's query
// would (same routing, same handler_limit slot). Errors are JSON
// {"error": "..."}: 400 for a name that is not a domain name, 404 for
// NXDOMAIN or no records of the type, 502 for SERVFAIL or no usable reply,
// 503 when handler_limit is reached, 405 for a method other than GET/HEAD.
//
// Metrics cost nothing on the query path: the forwarder, the listeners and
// the upstreams keep plain atomic counters, and the Collector here reads
// them only when Prometheus scrapes. Everything is registered on a private
// registry, never on client_golang's global default one.
package httpapi

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spartan-dns/spartan/actors/dnstap"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
)

// Sources are the counters the metrics read at scrape time.
type Sources struct {
	Store     *state.Store
	Forwarder *forwarder.Forwarder
	// TCPRefused returns the TCP connections refused over tcp_connections,
	// summed over the TCP listeners; nil reports 0.
	TCPRefused func() uint64
	// TCPOpen returns the TCP client connections open now, summed over the
	// TCP listeners; nil reports 0.
	TCPOpen func() int64
	// MastersLastRead returns the time of the last good masters read (zero:
	// none yet); nil when no masters watcher runs (master_source "none").
	MastersLastRead func() time.Time
	// Dnstap is the query log; nil when it is off.
	Dnstap *dnstap.Tap
	// TCPClosed calls each with the client connections the TCP listeners
	// cut off, by reason (garbage frame, unread replies, blocked writes);
	// nil reports none.
	TCPClosed func(each func(reason string, n uint64))
	// Reloads returns the SIGHUP reloads that handed over to a new process
	// and those whose new process failed (the old one kept serving).
	Reloads func() (handedOver, failed uint64)
	// NoUpstreams reports that the daemon has no upstream_resolvers.
	NoUpstreams bool
}

var (
	descQueries = prometheus.NewDesc("spartan_queries_total",
		"Queries answered (or dropped) by route and outcome.", []string{"route", "outcome"}, nil)
	descReplies = prometheus.NewDesc("spartan_upstream_replies_total",
		"Good replies (NOERROR or NXDOMAIN) received from an upstream.", []string{"upstream"}, nil)
	descFailures = prometheus.NewDesc("spartan_upstream_failures_total",
		"Failed exchanges with an upstream: errors, timeouts, SERVFAIL or REFUSED replies.", []string{"upstream"}, nil)
	descStalls = prometheus.NewDesc("spartan_upstream_stalls_total",
		"Exchanges with an upstream that had no reply by the hedge delay.", []string{"upstream"}, nil)
	descLatency = prometheus.NewDesc("spartan_upstream_latency_seconds",
		"Latency of an upstream's good replies.", []string{"upstream"}, nil)
	descScore = prometheus.NewDesc("spartan_upstream_health_score",
		"Decaying count of an upstream's recent failures; 0 is healthy.", []string{"upstream"}, nil)
	descShed = prometheus.NewDesc("spartan_shed_queries_total",
		"Queries shed over handler_limit (UDP dropped, TCP connection closed).", nil, nil)
	descRefused = prometheus.NewDesc("spartan_tcp_connections_refused_total",
		"TCP client connections closed at once over limits.tcp_connections.", nil, nil)
	descTCPOpen = prometheus.NewDesc("spartan_tcp_connections_open",
		"TCP client connections open now (each holds a slot of limits.tcp_connections).", nil, nil)
	descTCPClosed = prometheus.NewDesc("spartan_tcp_connections_closed_total",
		"TCP client connections the server cut off, by reason.", []string{"reason"}, nil)
	descReloads = prometheus.NewDesc("spartan_reloads_total",
		"SIGHUP reloads: handed_over to a new process, or failed (the new process exited or was not ready in time; the old one kept serving).", []string{"result"}, nil)
	descNoUpstreams = prometheus.NewDesc("spartan_upstream_resolvers_missing",
		"1 when the daemon has no upstream_resolvers: names outside the local zones, mesos and forward_zones get SERVFAIL.", nil, nil)
	descInFlight = prometheus.NewDesc("spartan_queries_in_flight",
		"Queries being handled now.", nil, nil)
	descMasters = prometheus.NewDesc("spartan_masters",
		"Masters currently known.", nil, nil)
	descMastersRead = prometheus.NewDesc("spartan_masters_last_read_timestamp_seconds",
		"Unix time of the last good masters read; 0 before the first one or without a master source.", nil, nil)
	descRaceAttempts = prometheus.NewDesc("spartan_race_extra_attempts_total",
		"Upstream attempts beyond a race's first two, by reason: hedge (nothing had answered by the hedge delay), escalation (every started attempt failed fast) or retransmit (nothing had answered, no upstream left: sent again, UDP).",
		[]string{"reason"}, nil)
	descTapSent = prometheus.NewDesc("spartan_dnstap_sent_total",
		"dnstap messages written to the file or collector.", nil, nil)
	descTapDropped = prometheus.NewDesc("spartan_dnstap_dropped_total",
		"dnstap messages dropped: the queue was full or the collector absent.", nil, nil)
	descAnswer = prometheus.NewDesc("spartan_answer_latency_seconds",
		"Latency of queries answered with an upstream's good reply, from arrival to the winning reply.", nil, nil)
	descRaceWins = prometheus.NewDesc("spartan_race_wins_total",
		"Races won by an attempt beyond the first two, by its reason; the rest of the upstream outcome was won by the first two.",
		[]string{"attempt"}, nil)

	// The answer cache (absent when it is off).
	descCacheEntries = prometheus.NewDesc("spartan_cache_entries",
		"Entries in the answer cache.", nil, nil)
	descCacheBytes = prometheus.NewDesc("spartan_cache_bytes",
		"Bytes of the cached replies, keys and TTL offsets (not Go's own overheads).", nil, nil)
	descCacheHits = prometheus.NewDesc("spartan_cache_hits_total",
		"Queries answered fresh from the cache.", nil, nil)
	descCacheMisses = prometheus.NewDesc("spartan_cache_misses_total",
		"Cacheable queries with no fresh entry (they raced, refreshed or waited).", nil, nil)
	descCacheStale = prometheus.NewDesc("spartan_cache_stale_total",
		"Stale answers given (RFC 8767).", nil, nil)
	descCachePrefetches = prometheus.NewDesc("spartan_cache_prefetches_total",
		"Background refreshes started by a hit in the last 10% of an entry's TTL.", nil, nil)
	descCacheCoalesced = prometheus.NewDesc("spartan_cache_coalesced_total",
		"Queries that waited for an identical query's race instead of racing.", nil, nil)
	descCacheEvictions = prometheus.NewDesc("spartan_cache_evictions_total",
		"Entries evicted to stay within cache.max_entries.", nil, nil)
)

// Collector is a prometheus.Collector over Spartan's atomics.
type Collector struct{ src Sources }

// NewCollector returns a collector reading src at scrape time.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueries, descReplies, descFailures, descStalls, descLatency,
		descScore, descShed, descRefused, descTCPOpen, descInFlight, descMasters, descMastersRead, descRaceAttempts, descRaceWins, descAnswer, descTapSent, descTapDropped,
		descTCPClosed, descReloads, descNoUpstreams,
		descCacheEntries, descCacheBytes, descCacheHits, descCacheMisses, descCacheStale, descCachePrefetches,
		descCacheCoalesced, descCacheEvictions} {
		ch <- d
	}
}

// possible reports whether a route can end with an outcome; those series
// are exported even at 0 so that rate() sees them from the start.
func possible(r forwarder.RouteKind, o forwarder.Outcome) bool {
	switch r {
	case forwarder.RouteNone:
		return o == forwarder.OutcomeFormErr || o == forwarder.OutcomeNotImp || o == forwarder.OutcomeDropped
	case forwarder.RouteLocal:
		return o == forwarder.OutcomeLocal
	default:
		return o == forwarder.OutcomeUpstream || o == forwarder.OutcomeUpstreamError || o == forwarder.OutcomeServFail ||
			o == forwarder.OutcomeCache || o == forwarder.OutcomeStale
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if f := c.src.Forwarder; f != nil {
		f.Stats.Each(func(r forwarder.RouteKind, o forwarder.Outcome, n uint64) {
			if n > 0 || possible(r, o) {
				ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(n), r.String(), o.String())
			}
		})
		ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(f.Stats.Shed.Load()))
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(f.InFlight()))
		cum, n, sum := f.Stats.Answer.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descAnswer, n, sum, cum)
		rs := &f.Stats.Race
		ch <- prometheus.MustNewConstMetric(descRaceAttempts, prometheus.CounterValue, float64(rs.Hedges.Load()), "hedge")
		ch <- prometheus.MustNewConstMetric(descRaceAttempts, prometheus.CounterValue, float64(rs.Escalations.Load()), "escalation")
		ch <- prometheus.MustNewConstMetric(descRaceAttempts, prometheus.CounterValue, float64(rs.Retransmits.Load()), "retransmit")
		ch <- prometheus.MustNewConstMetric(descRaceWins, prometheus.CounterValue, float64(rs.HedgeWins.Load()), "hedge")
		ch <- prometheus.MustNewConstMetric(descRaceWins, prometheus.CounterValue, float64(rs.EscalationWins.Load()), "escalation")
		if f.Cache != nil {
			s := f.Cache.Stats()
			for _, m := range []struct {
				d *prometheus.Desc
				t prometheus.ValueType
				v float64
			}{
				{descCacheEntries, prometheus.GaugeValue, float64(s.Entries)},
				{descCacheBytes, prometheus.GaugeValue, float64(s.Bytes)},
				{descCacheHits, prometheus.CounterValue, float64(s.Hits)},
				{descCacheMisses, prometheus.CounterValue, float64(s.Misses)},
				{descCacheStale, prometheus.CounterValue, float64(s.Stale)},
				{descCachePrefetches, prometheus.CounterValue, float64(s.Prefetches)},
				{descCacheCoalesced, prometheus.CounterValue, float64(s.Coalesced)},
				{descCacheEvictions, prometheus.CounterValue, float64(s.Evictions)},
			} {
				ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
			}
		}
	}
	var lastRead float64
	if c.src.MastersLastRead != nil {
		if t := c.src.MastersLastRead(); !t.IsZero() {
			lastRead = float64(t.UnixNano()) / 1e9
		}
	}
	ch <- prometheus.MustNewConstMetric(descMastersRead, prometheus.GaugeValue, lastRead)
	var sent, dropped uint64
	if t := c.src.Dnstap; t != nil {
		sent, dropped = t.Sent.Load(), t.Dropped.Load()
	}
	ch <- prometheus.MustNewConstMetric(descTapSent, prometheus.CounterValue, float64(sent))
	ch <- prometheus.MustNewConstMetric(descTapDropped, prometheus.CounterValue, float64(dropped))
	var refused uint64
	if c.src.TCPRefused != nil {
		refused = c.src.TCPRefused()
	}
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refused))
	var open int64
	if c.src.TCPOpen != nil {
		open = c.src.TCPOpen()
	}
	ch <- prometheus.MustNewConstMetric(descTCPOpen, prometheus.GaugeValue, float64(open))
	if c.src.TCPClosed != nil {
		c.src.TCPClosed(func(reason string, n uint64) {
			ch <- prometheus.MustNewConstMetric(descTCPClosed, prometheus.CounterValue, float64(n), reason)
		})
	}
	if c.src.Reloads != nil {
		ok, failed := c.src.Reloads()
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(ok), "handed_over")
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(failed), "failed")
	}
	missing := 0.0
	if c.src.NoUpstreams {
		missing = 1
	}
	ch <- prometheus.MustNewConstMetric(descNoUpstreams, prometheus.GaugeValue, missing)

	if c.src.Store == nil {
		return
	}
	snap := c.src.Store.Load()
	ch <- prometheus.MustNewConstMetric(descMasters, prometheus.GaugeValue, float64(len(snap.Masters)))
	for _, u := range snap.Upstreams {
		addr := u.Addr.String()
		ch <- prometheus.MustNewConstMetric(descReplies, prometheus.CounterValue, float64(u.Successes.Load()), addr)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(u.Failures.Load()), addr)
		ch <- prometheus.MustNewConstMetric(descStalls, prometheus.CounterValue, float64(u.Stalls.Load()), addr)
		ch <- prometheus.MustNewConstMetric(descScore, prometheus.GaugeValue, u.Score(), addr)
		cum, n, sum := u.Latency.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descLatency, n, sum, cum, addr)
	}
}

// Metrics is Spartan's private Prometheus registry: the Collector, actor
// restarts, and the standard Go and process collectors.
type Metrics struct {
	Registry *prometheus.Registry

	restarts *prometheus.CounterVec
	once     sync.Once
}

// NewMetrics builds the registry over src.
func NewMetrics(src Sources) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spartan_actor_restarts_total",
			Help: "Restarts of a supervision tree node after a failure or a kill.",
		}, []string{"path"}),
	}
	m.Registry.MustRegister(
		NewCollector(src),
		m.restarts,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Watch counts the restarts of tree's nodes. It takes the tree's OnRestart
// hook (there is one), so call it once, before the tree is served. Every
// node's series starts at 0.
func (m *Metrics) Watch(tree *supervisor.Tree) {
	m.once.Do(func() {
		var walk func(n supervisor.Node)
		walk = func(n supervisor.Node) {
			m.restarts.WithLabelValues(n.Path)
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(tree.Snapshot())
		tree.OnRestart(m.ActorRestarted)
	})
}

// ActorRestarted counts one restart of the node at path.
func (m *Metrics) ActorRestarted(path string) { m.restarts.WithLabelValues(path).Inc() }
