package main

import (
	"errors"

	"github.com/spartan-dns/spartan/actors/ctl"
	"github.com/spartan-dns/spartan/actors/httpapi"
	"github.com/spartan-dns/spartan/actors/listener"
	"github.com/spartan-dns/spartan/supervisor"
)

// addAPI adds the /spartan/api group: the control socket and the HTTP
// server (metrics, /v1 API). Both may crash-loop (a socket directory that
// cannot be created, a port in use) without touching DNS: the group has its
// own failure budget.
func (d *daemon) addAPI(root *supervisor.Sup) {
	api := root.Supervisor("api", groupOpts)
	if d.cfg.CtlSocket != "" {
		a := ctl.New(d.cfg.CtlSocket, api.Path()+"/ctl", d.tree, d.store, d.log.With().Str("actor", "ctl").Logger())
		if d.fwd.Cache != nil { // a nil *cache.Cache in the interface would not be nil
			a.WithCache(d.fwd.Cache)
		}
		if d.reloaded {
			a.WithTakeOver()
		}
		// Looked up at each request: main sets d.reload after the tree is
		// built (the upgrader needs the daemon's sockets), before it serves.
		a.WithReload(func() (int, func(), error) {
			if d.reload == nil {
				return 0, nil, errors.New("this daemon has no reloader (not started by main)")
			}
			return d.reload()
		})
		api.Actor("ctl", a)
	}
	if d.tap != nil {
		api.Actor("dnstap", d.tap)
	}
	if d.cfg.HTTPListen == "" {
		return
	}
	m := httpapi.NewMetrics(httpapi.Sources{
		Store:           d.store,
		Forwarder:       d.fwd,
		MastersLastRead: d.mastersRead,
		Dnstap:          d.tap,
		TCPRefused:      func() uint64 { return sumTCP(d.tcp, func(l *listener.TCP) uint64 { return l.Refused.Load() }) },
		TCPOpen:         func() int64 { return sumTCP(d.tcp, (*listener.TCP).Open) },
		TCPClosed: func(each func(string, uint64)) {
			sum := map[string]uint64{}
			var order []string
			for _, l := range d.tcp {
				l.EachCut(func(r string, n uint64) {
					if _, ok := sum[r]; !ok {
						order = append(order, r)
					}
					sum[r] += n
				})
			}
			for _, r := range order {
				each(r, sum[r])
			}
		},
		Reloads: func() (uint64, uint64) {
			if d.reloads == nil {
				return 0, 0
			}
			return d.reloads.Reloads.Load(), d.reloads.Failures.Load()
		},
		NoUpstreams: len(d.cfg.UpstreamResolvers) == 0,
	})
	m.Watch(d.tree)
	api.Actor("http", httpapi.New(httpapi.Options{
		Addr:      d.cfg.HTTPListen,
		Version:   Version,
		Store:     d.store,
		Forwarder: d.fwd,
		Metrics:   m,
		Pprof:     d.cfg.HTTPPprof,
	}, d.log.With().Str("actor", "http").Logger()))
}

// sumTCP adds up one counter of every TCP listener.
func sumTCP[T int64 | uint64](ls []*listener.TCP, f func(*listener.TCP) T) (n T) {
	for _, l := range ls {
		n += f(l)
	}
	return n
}
