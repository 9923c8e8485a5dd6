package main

import (
	"fmt"
	"io"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() { commands["kill"] = command{run: ctlCommand("kill", killMain)} }

func killMain(out, errOut io.Writer, socket string, args []string) int {
	fs, code, ok := parseCommand("kill", errOut, args, "PATH", nil)
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
