package forwarder

// MaxRetransmits is maxRetransmits, for the external tests' bounds.
const MaxRetransmits = maxRetransmits

// PortUses and PortPool are maxUses and minIdle (upsock.go), for the
// external tests of the loop's upstream ports.
const (
	PortUses = maxUses
	PortPool = minIdle
)
