package listener

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/testkit"
)

// forwarderTo returns a forwarder whose default route is ups, and the
// config it serves.
func forwarderTo(ups ...netip.AddrPort) (*forwarder.Forwarder, *config.Config) {
	cfg := config.Default()
	cfg.UpstreamResolvers = ups
	return forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop()), cfg
}

// serving waits until a listener at addr answers ready.spartan over UDP
// (from a socket of its own, so the test's client sees no extra reply).
func serving(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("ready.spartan.", dns.TypeA)
	c := &dns.Client{Timeout: 50 * time.Millisecond}
	testkit.WaitFor(t, "the listener to answer", 5*time.Second, func() bool {
		r, _, err := c.Exchange(q, addr.String())
		return err == nil && len(r.Answer) == 1
	})
}
