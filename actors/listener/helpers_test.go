package listener

import (
	"net/netip"
	"testing"

	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/test/harness"
)

// forwarderTo returns a forwarder whose default route is ups, and the
// config it serves.
func forwarderTo(ups ...netip.AddrPort) (*forwarder.Forwarder, *config.Config) {
	cfg := config.Default()
	cfg.UpstreamResolvers = ups
	return forwarder.New(state.NewStore(cfg, state.NewRegistry()), zerolog.Nop()), cfg
}

// freeAddrPort returns a loopback address and port no one listens on.
func freeAddrPort(t *testing.T) netip.AddrPort {
	ip, port := harness.FreeAddr(t)
	return netip.AddrPortFrom(ip, uint16(port))
}
