// Package supervisor is Spartan's actor tree: named nodes with paths on top of
// github.com/thejerf/suture/v4, restart accounting taken from suture's event
// hook, Snapshot (behind `spartanctl tree`) and Kill (behind `spartanctl kill`).
//
// # Why the tree is shaped in groups
//
// A suture supervisor keeps ONE failure counter for all of its children. When
// that counter passes FailureThreshold, the supervisor stops restarting any of
// its children for FailureBackoff, so one actor that keeps crashing would keep
// its siblings down too if they crashed in that window. Spartan therefore puts
// each group of actors (state, dns listeners, node, api) under its own
// sub-supervisor with its own Options: repeated kills of, say, the watchdog can
// only spend the budget of /spartan/node, never the one of /spartan/dns, whose
// budget is sized so that listeners are never paused.
//
// # How a node runs
//
// Every node is wrapped in an unexported suture.Service whose String() is the
// node's path, so suture's events name nodes by path. An actor's wrapper calls
// the actor's Serve on the same value every time (actors keep state across
// restarts on purpose). A supervisor node's wrapper builds a fresh
// suture.Supervisor each time it runs and adds the persistent child wrappers to
// it, so killing a supervisor node restarts its whole subtree with a fresh
// failure budget. The root node itself runs under a hidden top-level suture
// supervisor, so even the root can be killed and comes back.
//
// # How Kill works
//
// Each run of a wrapper gets its own cancellable context. Kill(path) marks the
// current run as killed and cancels that context. The inner Serve sees its
// context done and returns; the wrapper then returns ErrKilled instead of the
// inner result, so the parent suture supervisor counts a failure and restarts
// the node exactly as after a crash (same budget, same backoff, same events).
// An actor that ignores its context is abandoned after Options.Timeout (its
// goroutine is left behind and logged); its next run waits until the abandoned
// call has returned, so an actor's Serve never runs twice at once.
package supervisor
