package watchdog

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/spartan-dns/spartan/actors/config"
)

// ReadyName is the name every Spartan answers locally with A 127.0.0.1.
const ReadyName = "ready.spartan."

var readyIP = netip.MustParseAddr("127.0.0.1")

// Targets is where a daemon running cfg answers ready.spartan, as the
// watchdog and `spartanctl check` probe it: the first bind IP, at udp_port
// and tcp_port. A transport whose server is disabled (or a config without
// bind IPs) gives a zero AddrPort, which ProbeAddrs skips.
func Targets(cfg *config.Config) (udp, tcp netip.AddrPort) {
	if len(cfg.BindIPs) == 0 {
		return udp, tcp
	}
	ip := cfg.BindIPs[0]
	if cfg.UDPServerEnabled {
		udp = netip.AddrPortFrom(ip, uint16(cfg.UDPPort))
	}
	if cfg.TCPServerEnabled {
		tcp = netip.AddrPortFrom(ip, uint16(cfg.TCPPort))
	}
	return udp, tcp
}

// Probe resolves ready.spartan at addr over UDP and over TCP, in parallel,
// each within timeout. It succeeds only if both return an A 127.0.0.1; the
// error names each transport that failed and why.
func Probe(ctx context.Context, addr netip.AddrPort, timeout time.Duration) error {
	return ProbeAddrs(ctx, addr, addr, timeout)
}

// ProbeAddrs is Probe with separate UDP and TCP addresses, for a daemon
// whose udp_port and tcp_port differ. A zero (invalid) AddrPort skips that
// transport, for a daemon with one server disabled; skipping both is an
// error.
func ProbeAddrs(ctx context.Context, udp, tcp netip.AddrPort, timeout time.Duration) error {
	if !udp.IsValid() && !tcp.IsValid() {
		return errors.New("probe: no address to probe")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Both transports run at once so a probe costs one timeout, not two.
	var udpErr, tcpErr error
	done := make(chan struct{})
	if tcp.IsValid() {
		go func() {
			defer close(done)
			if err := probeOne(ctx, "tcp", tcp, timeout); err != nil {
				tcpErr = fmt.Errorf("tcp %s: %w", tcp, err)
			}
		}()
	} else {
		close(done)
	}
	if udp.IsValid() {
		if err := probeOne(ctx, "udp", udp, timeout); err != nil {
			udpErr = fmt.Errorf("udp %s: %w", udp, err)
		}
	}
	<-done
	return errors.Join(udpErr, tcpErr)
}

// probeOne asks one transport and checks the reply is exactly what a
// healthy Spartan gives: NOERROR with an A 127.0.0.1 for ready.spartan.
func probeOne(ctx context.Context, network string, addr netip.AddrPort, timeout time.Duration) error {
	q := new(dns.Msg)
	q.SetQuestion(ReadyName, dns.TypeA)
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.ExchangeContext(ctx, q, addr.String())
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		a, ok := rr.(*dns.A)
		if !ok || !strings.EqualFold(a.Hdr.Name, ReadyName) {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.A); ok && ip.Unmap() == readyIP {
			return nil
		}
	}
	return fmt.Errorf("no A %s for %s in the answer (%d records)", readyIP, ReadyName, len(r.Answer))
}
