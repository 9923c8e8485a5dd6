// Package release holds the checks of the systemd units shipped in rel/:
// systemd-analyze verify and security on the real files, the keys the
// product relies on, and the watchdog unit's shell command run against
// stubs.
package release
