// Command spartanctl inspects and controls a running Spartan (tree, kill,
// upstreams over the control socket) and carries the node tools that run
// without it (check, genresolv).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spartan-dns/spartan/actors/config"
)

const usage = `usage: spartanctl [-socket PATH] <command> [args]

commands:
  tree [--json]        the live supervision tree
  kill PATH            make the actor or supervisor at PATH fail (its supervisor restarts it)
  upstreams            each upstream with its successes, failures, latency and health rank
  cache [--json]       answer cache statistics
  cache flush [NAME]   empty the cache, or NAME and every name under it
  check [-addr IP[:PORT]] [-timeout D]
                       watchdog probe: exit 0 only if ready.spartan resolves over UDP and TCP
  genresolv [-config PATH] [-resolvers LIST] [-search DOMAINS] PATH
                       regenerate a resolv.conf pointing at the live Spartan IPs

run "spartanctl <command> -h" for a command's flags and exit codes.
`

// commands maps each subcommand to its implementation; each returns the
// process exit code. The control-socket commands take the global -socket.
var commands = map[string]func(socket string, args []string) int{}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	socket := config.DefaultCtlSocket
	for len(args) > 0 && (args[0] == "-socket" || args[0] == "--socket") {
		if len(args) < 2 {
			fmt.Fprint(os.Stderr, "spartanctl: -socket needs a path\n", usage)
			return 2
		}
		socket, args = args[1], args[2:]
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "spartanctl: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return cmd(socket, args[1:])
}

// newFlagSet returns the flag set of a node-tool subcommand (check,
// genresolv): errors and -h go to errOut, -h prints usage then the flags.
func newFlagSet(name, usage string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}
