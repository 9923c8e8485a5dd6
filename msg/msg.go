// Package msg defines the typed messages Spartan's actors send each other.
// Every message is a plain value: once sent, neither side mutates it.
//
// The vocabulary is closed: each channel between actors carries one sealed
// interface, implemented only by the messages in this package that may
// travel on it, so the compiler rejects anything else.
package msg

import (
	"net/netip"
	"time"
)

// ToState is what a masters watcher sends the config actor
// (/spartan/state/config): Masters or ReadFailed.
type ToState interface{ toState() }

// Masters is sent by a masters watcher to the config actor after every
// successful read. IPs is deduplicated and sorted (netip.Addr.Compare), and
// never empty: an empty read is a failed read and is not sent.
type Masters struct {
	Source string       // the master_source: config.MasterSourceExhibitor, ...
	IPs    []netip.Addr // deduplicated, sorted
	At     time.Time    // when the read completed
}

// ReadFailed is sent by a masters watcher when a read fails. The config
// actor keeps the last known masters; the message exists for logs and
// metrics.
type ReadFailed struct {
	Source string
	Err    error
	At     time.Time
}

func (Masters) toState()    {}
func (ReadFailed) toState() {}
