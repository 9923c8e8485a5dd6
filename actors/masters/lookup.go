package masters

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Lookup resolves a hostname to IPv4 addresses. Watchers use it for master
// hostnames, exhibitor_address and zookeeper_servers so that finding the
// masters never depends on Spartan itself (the host's resolv.conf points at
// Spartan, which needs the masters to answer *.mesos).
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// UpstreamLookup returns a Lookup that sends an A query to each upstream in
// turn, giving each one timeout, and returns the first answer. A network
// error, SERVFAIL or REFUSED moves on to the next upstream; NXDOMAIN or an
// answer without A records is final. IP literals are returned as they are.
func UpstreamLookup(upstreams []netip.AddrPort, timeout time.Duration) Lookup {
	ups := append([]netip.AddrPort(nil), upstreams...)
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if ip, err := netip.ParseAddr(host); err == nil {
			return []netip.Addr{ip}, nil
		}
		if len(ups) == 0 {
			return nil, fmt.Errorf("resolve %q: no upstream resolvers configured", host)
		}
		var errs []error
		for _, up := range ups {
			if err := ctx.Err(); err != nil {
				errs = append(errs, err)
				break
			}
			ips, final, err := queryA(ctx, up, host, timeout)
			if err == nil {
				return ips, nil
			}
			if final {
				return nil, fmt.Errorf("resolve %q: %w", host, err)
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("resolve %q: %w", host, errors.Join(errs...))
	}
}

// queryA asks one upstream. final reports an authoritative negative answer
// that another upstream should not be asked to overrule.
func queryA(ctx context.Context, up netip.AddrPort, host string, timeout time.Duration) (ips []netip.Addr, final bool, err error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(host), dns.TypeA)
	q.RecursionDesired = true

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.ExchangeContext(ctx, q, up.String())
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, q, up.String())
	}
	if err != nil {
		return nil, false, fmt.Errorf("upstream %s: %w", up, err)
	}
	if len(r.Question) != 1 || !dns.IsFqdn(r.Question[0].Name) ||
		!equalFold(r.Question[0].Name, q.Question[0].Name) || r.Question[0].Qtype != dns.TypeA {
		return nil, false, fmt.Errorf("upstream %s: reply does not match the question", up)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, true, fmt.Errorf("upstream %s: NXDOMAIN", up)
	default:
		return nil, false, fmt.Errorf("upstream %s: %s", up, dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 {
		return nil, true, fmt.Errorf("upstream %s: no A records", up)
	}
	return ips, false, nil
}

func equalFold(a, b string) bool {
	return len(a) == len(b) && dns.CanonicalName(a) == dns.CanonicalName(b)
}
