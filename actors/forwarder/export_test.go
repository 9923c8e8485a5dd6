package forwarder

// MaxRetransmits is maxRetransmits, for the external tests' bounds.
const MaxRetransmits = maxRetransmits
