package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() {
	commands["reload"] = command{run: ctlCommand("reload", reloadMain), flags: func(fs *flag.FlagSet) { reloadFlags(fs) }}
}

// reloadFlags declares reload's flags. The default outlasts the daemon's
// own bound on a reload (-reload-timeout 30 s, then up to 10 s to stop a
// new process that did not serve).
func reloadFlags(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 80*time.Second, "how long to wait for the reload to end")
}

// reloadMain asks the daemon to reload and waits until it is over: the
// unit's ExecReload, so that `systemctl reload` returns once the new
// process serves, and fails when the reload fails.
func reloadMain(out, errOut io.Writer, socket string, args []string) int {
	var timeout *time.Duration
	if _, code, ok := parseCommand("reload", errOut, args, "", func(fs *flag.FlagSet) { timeout = reloadFlags(fs) }); !ok {
		return code
	}
	resp, code := ctlCallWithin(errOut, socket, "reload", ctl.Request{Cmd: ctl.CmdReload}, *timeout)
	if code != 0 {
		return code
	}
	fmt.Fprintf(out, "reloaded: process %d serves\n", resp.PID)
	return 0
}
