// Package conformance holds the protocol conformance suite of Spartan:
// RFC 5625 (DNS proxy implementation guidelines), RFC 7766 (DNS over TCP)
// and RFC 6891 (EDNS(0)). Every test runs the real daemon (test/harness) in
// front of a real BIND9 (test/bindharness) or an in-process upstream, and
// is named after the section it checks. docs/CONFORMANCE.md maps each
// requirement to its test.
package conformance
