package forwarder

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The dnstap hooks (Forwarder.Tap, nil when dnstap is off) sit where each
// message passes: in the loop, accept (client query), send (client
// response; sendAs, for a cached answer, marks it), sendUpstream and
// upstreamReply (forwarder query and response); in the goroutine race,
// exchangeOn; the TCP listener logs its clients' queries and responses
// (AnswerFrom says which came from the cache). Each is one nil test when
// dnstap is off.

// addrPort returns the address in sa (for the dnstap log only: it is not
// on the path of a query when dnstap is off).
func (sa *sockaddr) addrPort() netip.AddrPort {
	switch sa.raw.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), getPort(&p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), getPort(&p.Port))
	}
	return netip.AddrPort{}
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}
