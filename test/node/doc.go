// Package node holds the end-to-end tests of Spartan's node integration:
// the real daemon managing its link inside a private network namespace,
// READY=1/WATCHDOG=1 to a NOTIFY_SOCKET, the watchdog's exit, and
// `spartanctl genresolv` feeding glibc (getent) inside the namespace.
package node
