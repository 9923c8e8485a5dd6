package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() { commands["kill"] = runKill }

const killUsage = `usage: spartanctl [-socket PATH] kill PATH

Makes the actor or supervisor at PATH (as printed by "spartanctl tree", e.g.
/spartan/dns/udp-198.51.100.1) fail now, as if it had crashed: its
supervisor restarts it. Killing a supervisor restarts its whole subtree.

exit status: 0 killed; 1 no such path, not running, or the daemon could not
be asked; 2 bad usage.
`

func runKill(socket string, args []string) int { return killMain(os.Stdout, os.Stderr, socket, args) }

func killMain(out, errOut io.Writer, socket string, args []string) int {
	fs, code, ok := parseCommand("kill", killUsage, errOut, args, "PATH", nil)
	if !ok {
		return code
	}
	path := fs.Arg(0)
	if _, code := ctlCall(errOut, socket, "kill", ctl.Request{Cmd: ctl.CmdKill, Path: path}); code != 0 {
		return code
	}
	fmt.Fprintf(out, "killed %s\n", path)
	return 0
}
