// A module of its own, so that the libraries it compares the answer cache
// with never become dependencies of Spartan.
module github.com/spartan-dns/spartan/bench/cachecmp

go 1.26.8

replace github.com/spartan-dns/spartan => ../..

require (
	github.com/maypok86/otter/v2 v2.4.0
	github.com/miekg/dns v1.1.73
	github.com/spartan-dns/spartan v0.0.0-00010101000000-000000000000
)

require (
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
