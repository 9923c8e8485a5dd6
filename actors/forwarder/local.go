package forwarder

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/actors/state"
)

// The local zones Spartan answers itself. TTLs are short because the
// contents follow the cluster (masters change) and the process (bind IPs).
const (
	localTTL = 5
	zoneSOA  = "support.mesosphere.com."
)

// localZone returns which local zone owns name ("spartan.", "localhost.",
// "zk.") or "".
func localZone(name string) string {
	for _, z := range LocalZones {
		if state.InZone(name, z) {
			return z
		}
	}
	return ""
}

// answerLocal answers a query for a local zone. It parses the query with
// miekg/dns (the local path is rare, and the reply is ours to build).
func answerLocal(snap *state.Snapshot, zone string, q []byte, qEnd int) []byte {
	var req dns.Msg
	if err := req.Unpack(q); err != nil || len(req.Question) != 1 {
		return errorReply(q, qEnd, rcodeFormErr)
	}
	rep := new(dns.Msg)
	rep.SetReply(&req)
	rep.Authoritative = true
	rep.RecursionAvailable = true
	qs := req.Question[0]
	name := strings.ToLower(qs.Name)
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		// For its local zones Spartan is the responder: an EDNS version it
		// does not speak gets BADVERS with a version 0 OPT (RFC 6891 6.1.3).
		rep.SetEdns0(dns.DefaultMsgSize, opt.Do())
		rep.Rcode = dns.RcodeBadVers
		if out, err := rep.Pack(); err == nil {
			return out
		}
		return errorReply(q, qEnd, rcodeServFail)
	}

	records, exists := LocalRecords(snap, zone)[name]
	if !exists {
		rep.Rcode = dns.RcodeNameError
	}
	for _, rr := range records {
		if qs.Qtype == rr.Header().Rrtype || qs.Qtype == dns.TypeANY {
			rr = dns.Copy(rr)
			rr.Header().Name = qs.Name // echo the client's case
			rep.Answer = append(rep.Answer, rr)
		}
	}
	if len(rep.Answer) == 0 {
		rep.Ns = append(rep.Ns, soa(zone))
	}
	if opt := req.IsEdns0(); opt != nil {
		rep.SetEdns0(dns.DefaultMsgSize, opt.Do())
	}
	out, err := rep.Pack()
	if err != nil {
		return errorReply(q, qEnd, rcodeServFail)
	}
	return out
}

// LocalRecords returns every record of a local zone by lower-case owner
// name. It is computed from the snapshot on demand: local answers are rare
// and the zones are tiny.
func LocalRecords(snap *state.Snapshot, zone string) map[string][]dns.RR {
	m := map[string][]dns.RR{}
	add := func(rr dns.RR) {
		n := rr.Header().Name
		m[n] = append(m[n], rr)
	}
	switch zone {
	case "spartan.":
		add(soa(zone))
		add(&dns.NS{Hdr: hdr(zone, dns.TypeNS), Ns: "ns.spartan."})
		add(a("ready.spartan.", netip.MustParseAddr("127.0.0.1")))
		if ips := snap.Config.BindIPs; len(ips) > 0 {
			add(a("ns.spartan.", ips[0]))
		}
	case "zk.":
		add(soa(zone))
		add(&dns.NS{Hdr: hdr(zone, dns.TypeNS), Ns: "ns.zk."})
		if ips := snap.Config.BindIPs; len(ips) > 0 {
			add(a("ns.zk.", ips[0]))
		}
		for i, ip := range snap.ZK {
			add(a("zk-"+string(rune('1'+i))+".zk.", ip))
		}
	case "localhost.":
		add(soa(zone))
		add(&dns.NS{Hdr: hdr(zone, dns.TypeNS), Ns: "localhost."})
		add(a("localhost.", netip.MustParseAddr("127.0.0.1")))
		add(a("localhost.", netip.IPv6Loopback()))
	}
	return m
}

// LocalZones are the zones Spartan serves itself.
var LocalZones = []string{"spartan.", "zk.", "localhost."}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: localTTL}
}

func a(name string, ip netip.Addr) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(ip.AsSlice())}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(ip.AsSlice())}
}

func soa(zone string) dns.RR {
	return &dns.SOA{
		Hdr: hdr(zone, dns.TypeSOA), Ns: "ns." + zone, Mbox: zoneSOA,
		Serial: 1, Refresh: 60, Retry: 180, Expire: 86400, Minttl: 1,
	}
}
