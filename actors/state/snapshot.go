package state

import (
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/spartan-dns/spartan/actors/config"
)

// Snapshot is the immutable state the query path reads. The config actor
// builds a new one whenever masters change and publishes it through Store;
// nothing in a published Snapshot is ever modified. The live state the
// query path reads through it (upstream counters and health, route hedge
// delays) lives in atomics the Registry owns and the snapshot only points
// at, so it survives every new snapshot.
type Snapshot struct {
	Config  *config.Config
	Masters []netip.Addr // deduplicated, sorted
	ZK      []netip.Addr // zk-1..zk-5 in order; nil when no masters are known

	Default *Route      // upstream_resolvers
	Mesos   *Route      // the masters at mesos_dns_port; no upstreams when none are known
	Zones   []ZoneRoute // forward_zones, longest zone first

	// Upstreams lists every upstream of every route once, for stats.
	Upstreams []*Upstream
}

// Route is a named set of upstreams.
type Route struct {
	Name      string // "default", "mesos", or the zone
	Upstreams []*Upstream

	hedge *routeHedge // the Registry's, for this route name; set by the config actor (hedge.go)
}

// eachRoute calls fn for every route of the snapshot.
func (s *Snapshot) eachRoute(fn func(*Route)) {
	fn(s.Default)
	fn(s.Mesos)
	for _, z := range s.Zones {
		fn(z.Route)
	}
}

// ZoneRoute is one forward_zones entry.
type ZoneRoute struct {
	Zone  string // lower-case FQDN, "example.com."
	Route *Route
}

// Zone returns the route of the longest forward zone that contains name
// (lower-case FQDN), or nil.
func (s *Snapshot) Zone(name string) *Route {
	for _, z := range s.Zones {
		if InZone(name, z.Zone) {
			return z.Route
		}
	}
	return nil
}

// InZone reports whether the lower-case FQDN name is zone or below it.
func InZone(name, zone string) bool {
	if zone == "." {
		return true
	}
	if !strings.HasSuffix(name, zone) {
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}

// Store publishes snapshots: one writer (the config actor), any number of
// lock-free readers.
type Store struct{ p atomic.Pointer[Snapshot] }

// Load returns the current snapshot (never nil once the store is built by NewStore).
func (s *Store) Load() *Snapshot { return s.p.Load() }

// Publish makes snap the current snapshot.
func (s *Store) Publish(snap *Snapshot) { s.p.Store(snap) }

// NewStore returns a store holding the snapshot built from cfg with no masters.
func NewStore(cfg *config.Config, reg *Registry) *Store {
	s := &Store{}
	s.Publish(Build(cfg, nil, reg))
	return s
}

// Build assembles a snapshot. Upstream objects and route hedge delays come
// from reg so that they survive across snapshots.
func Build(cfg *config.Config, masters []netip.Addr, reg *Registry) *Snapshot {
	s := &Snapshot{Config: cfg, Masters: masters}
	seen := map[*Upstream]bool{}
	route := func(name string, addrs []netip.AddrPort) *Route {
		r := &Route{Name: name, hedge: reg.hedge(name)}
		for _, a := range addrs {
			u := reg.Get(a)
			r.Upstreams = append(r.Upstreams, u)
			if !seen[u] {
				seen[u] = true
				s.Upstreams = append(s.Upstreams, u)
			}
		}
		return r
	}
	s.Default = route("default", cfg.UpstreamResolvers)
	mesos := make([]netip.AddrPort, 0, len(masters))
	for _, m := range masters {
		mesos = append(mesos, netip.AddrPortFrom(m, uint16(cfg.MesosDNSPort)))
	}
	s.Mesos = route("mesos", mesos)
	for zone, addrs := range cfg.ForwardZones {
		s.Zones = append(s.Zones, ZoneRoute{Zone: zone, Route: route(zone, addrs)})
	}
	sort.Slice(s.Zones, func(i, j int) bool {
		if len(s.Zones[i].Zone) != len(s.Zones[j].Zone) {
			return len(s.Zones[i].Zone) > len(s.Zones[j].Zone)
		}
		return s.Zones[i].Zone < s.Zones[j].Zone
	})
	if len(masters) > 0 {
		s.ZK = make([]netip.Addr, 5)
		for i := range s.ZK {
			s.ZK[i] = masters[i%len(masters)]
		}
	}
	return s
}
