package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spartan-dns/spartan/actors/ctl"
	"github.com/spartan-dns/spartan/supervisor"
)

func init() {
	commands["tree"] = command{run: ctlCommand("tree", treeMain), flags: func(fs *flag.FlagSet) { treeFlags(fs) }}
}

func treeFlags(fs *flag.FlagSet) *bool { return fs.Bool("json", false, "print the tree as JSON") }

// ctlTimeout bounds one control-socket request: the daemon answers from
// memory, so anything slower means it is wedged.
const ctlTimeout = 5 * time.Second

func treeMain(out, errOut io.Writer, socket string, args []string) int {
	var asJSON *bool
	if _, code, ok := parseCommand("tree", errOut, args, "", func(fs *flag.FlagSet) { asJSON = treeFlags(fs) }); !ok {
		return code
	}
	resp, code := ctlCall(errOut, socket, "tree", ctl.Request{Cmd: ctl.CmdTree})
	if resp == nil {
		return code
	}
	if resp.Tree == nil {
		fmt.Fprintln(errOut, "spartanctl tree: the daemon sent no tree")
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(resp.Tree); err != nil {
			fmt.Fprintf(errOut, "spartanctl tree: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSTATE\tRESTARTS\tUPTIME")
	printNode(tw, *resp.Tree, 0)
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(errOut, "spartanctl tree: %v\n", err)
		return 1
	}
	return 0
}

func printNode(w io.Writer, n supervisor.Node, depth int) {
	name := n.Name
	if depth == 0 {
		name = n.Path // the root shows where paths start
	}
	fmt.Fprintf(w, "%s%s\t%s\t%s\t%d\t%s\n", strings.Repeat("  ", depth), name, n.Kind, n.State, n.Restarts, formatUptime(n))
	for _, c := range n.Children {
		printNode(w, c, depth+1)
	}
}

func formatUptime(n supervisor.Node) string {
	if n.State != supervisor.StateRunning {
		return "-"
	}
	d := time.Duration(n.Uptime * float64(time.Second))
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// parseCommand parses a control-socket subcommand's flags (declared by
// flags, may be nil) and checks its arguments: none when arg is "", else
// exactly one, named arg. When ok is false the command returns code at
// once: 0 after -h, 2 for bad usage.
func parseCommand(name string, errOut io.Writer, args []string, arg string, flags func(*flag.FlagSet)) (fs *flag.FlagSet, code int, ok bool) {
	usage := usageOf(name)
	fs = newFlagSet(name, errOut)
	if flags != nil {
		flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fs, 0, false
		}
		return fs, 2, false
	}
	switch {
	case arg == "" && fs.NArg() != 0:
		fmt.Fprintf(errOut, "spartanctl %s: unexpected argument %q\n%s", name, fs.Arg(0), usage)
		return fs, 2, false
	case arg != "" && fs.NArg() != 1:
		fmt.Fprintf(errOut, "spartanctl %s: want exactly one %s\n%s", name, arg, usage)
		return fs, 2, false
	}
	return fs, 0, true
}

// ctlCall sends one request and reports any failure on errOut. It returns
// the response, or nil and the exit code to return.
func ctlCall(errOut io.Writer, socket, what string, req ctl.Request) (*ctl.Response, int) {
	return ctlCallWithin(errOut, socket, what, req, ctlTimeout)
}

// ctlCallWithin is ctlCall waiting up to timeout for the answer.
func ctlCallWithin(errOut io.Writer, socket, what string, req ctl.Request, timeout time.Duration) (*ctl.Response, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := ctl.Call(ctx, socket, req)
	if err == nil {
		return resp, 0
	}
	var (
		ce   *ctl.Error
		conn *ctl.ConnectError
	)
	switch {
	case errors.As(err, &conn):
		fmt.Fprintf(errOut, "spartanctl: cannot connect to %s: is spartan running? (%s)\n", socket, conn.Cause())
	case errors.As(err, &ce):
		fmt.Fprintf(errOut, "spartanctl %s: %s\n", what, ce.Msg)
	default:
		fmt.Fprintf(errOut, "spartanctl %s: %v\n", what, err)
	}
	return nil, 1
}
