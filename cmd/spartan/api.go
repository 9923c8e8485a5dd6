package main

import "github.com/spartan-dns/spartan/supervisor"

// addAPI adds the /spartan/api group: the control socket and the HTTP
// server (metrics, /v1 API).
func (d *daemon) addAPI(root *supervisor.Sup) {
	_ = root.Supervisor("api", groupOpts)
}
