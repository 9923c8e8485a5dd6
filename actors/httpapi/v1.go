// The /v1 handlers: hosts and services looked up through the query path,
// and the records of the local zones.

package httpapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
)

// addrs resolves the A and AAAA records of name at once. It fails only
// when both lookups failed or found nothing; a SERVFAIL wins over a 404 in
// the status, since the name may well exist.
func (s *Server) addrs(name string) ([]netip.Addr, error) {
	types := []uint16{dns.TypeA, dns.TypeAAAA}
	var (
		wg   sync.WaitGroup
		msgs = make([]*dns.Msg, len(types))
		errs = make([]error, len(types))
	)
	for i, t := range types {
		wg.Go(func() { msgs[i], errs[i] = s.query(name, t) })
	}
	wg.Wait()
	var out []netip.Addr
	for _, m := range msgs {
		out = append(out, answerAddrs(m)...)
	}
	if len(out) > 0 {
		return out, nil
	}
	var worst error
	for _, err := range errs {
		if err != nil && (worst == nil || statusOf(err) != http.StatusNotFound) {
			worst = err
		}
	}
	if worst != nil {
		return nil, worst
	}
	return nil, &lookupError{http.StatusNotFound, name + ": no A or AAAA records"}
}

// answerAddrs returns the A and AAAA records of a reply's answer section
// (whatever their owner: a CNAME chain ends at the addresses).
func answerAddrs(m *dns.Msg) []netip.Addr {
	if m == nil {
		return nil
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		if ip, ok := rrAddr(rr); ok {
			out = append(out, ip)
		}
	}
	return out
}

func rrAddr(rr dns.RR) (netip.Addr, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		ip, ok := netip.AddrFromSlice(rr.A.To4())
		return ip, ok
	case *dns.AAAA:
		ip, ok := netip.AddrFromSlice(rr.AAAA.To16())
		return ip, ok
	}
	return netip.Addr{}, false
}

func (s *Server) hosts(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	name, ok := validName(host)
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad host name %q", host))
		return
	}
	ips, err := s.addrs(name)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	out := make([]Host, 0, len(ips))
	for _, ip := range ips {
		out = append(out, Host{Host: name, IP: ip.String()})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	svc := r.PathValue("service")
	name, ok := validName(svc)
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad service name %q", svc))
		return
	}
	m, err := s.query(name, dns.TypeSRV)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	var srvs []*dns.SRV
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
		}
	}
	if len(srvs) == 0 {
		writeError(w, http.StatusNotFound, name+": no SRV records")
		return
	}
	if len(srvs) > maxSRVTargets {
		srvs = srvs[:maxSRVTargets]
	}

	// Targets' addresses: from the additional section when the upstream
	// sent them (Mesos-DNS does), else looked up, each target once.
	ips := map[string][]netip.Addr{}
	for _, rr := range m.Extra {
		if ip, ok := rrAddr(rr); ok {
			k := strings.ToLower(rr.Header().Name)
			ips[k] = append(ips[k], ip)
		}
	}
	var todo []string
	for _, srv := range srvs {
		k := strings.ToLower(srv.Target)
		if _, known := ips[k]; !known {
			ips[k] = nil
			todo = append(todo, srv.Target)
		}
	}
	found := make([][]netip.Addr, len(todo))
	var wg sync.WaitGroup
	for i, target := range todo {
		wg.Go(func() {
			got, err := s.addrs(target)
			if err != nil {
				s.log.Debug().Err(err).Str("target", target).Msg("SRV target did not resolve")
			}
			found[i] = got
		})
	}
	wg.Wait()
	for i, target := range todo {
		ips[strings.ToLower(target)] = found[i]
	}

	out := make([]Service, 0, len(srvs))
	for _, srv := range srvs {
		addrs := ips[strings.ToLower(srv.Target)]
		if len(addrs) == 0 {
			// The record exists; say so, with the address we could not find empty.
			out = append(out, Service{Host: srv.Target, Port: int(srv.Port), Service: name})
			continue
		}
		for _, ip := range addrs {
			out = append(out, Service{Host: srv.Target, Port: int(srv.Port), Service: name, IP: ip.String()})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) records(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, recordList(s.opts.Store.Load()))
}

// recordList lists every record of Spartan's local zones (forwarder's
// LocalRecords, zone by zone) as /v1/records shows them: sorted by name,
// type and value.
func recordList(snap *state.Snapshot) []Record {
	out := []Record{}
	for _, zone := range forwarder.LocalZones {
		for _, rrs := range forwarder.LocalRecords(snap, zone) {
			for _, rr := range rrs {
				h := rr.Header()
				out = append(out, Record{
					Name:  h.Name,
					Type:  dns.TypeToString[h.Rrtype],
					TTL:   h.Ttl,
					Value: strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String())),
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Value < b.Value
	})
	return out
}
