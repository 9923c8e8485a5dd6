// Package release holds the checks of what ships: the systemd units of
// rel/ (systemd-analyze verify and security on the real files, the keys
// the product relies on, the watchdog unit's shell command run against
// stubs), the Debian package (contents, lintian, maintainer scripts), the
// Grafana dashboard against a running daemon's /metrics, and the links of
// the documentation.
package release
