// Command spartanctl inspects and controls a running Spartan (tree, kill,
// upstreams over the control socket) and carries the node tools that run
// without it (check, genresolv).
package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spartan-dns/spartan/cmd/internal/manual"
)

// page is the man page source, spartanctl(8): "help" prints it as text,
// "COMMAND -h" that command's part of it.
//
//go:embed spartanctl.8.md
var page string

const shortUsage = "usage: spartanctl [-socket PATH] [-config PATH] tree|kill|upstreams|cache|reload|check|genresolv [args]; spartanctl help\n"

// usageOf is the help text of one command.
func usageOf(name string) string { return manual.Command(page, name) }

// globals are the options every command takes, before or after its name.
type globals struct {
	socket string // -socket; "" means ctl_socket of the configuration
	config string // -config; "" means the default file, else built-ins
}

// ctlSocket is the control socket to use: -socket, else the ctl_socket of
// the configuration.
func (g globals) ctlSocket() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	cfg, err := loadConfig(g.config)
	if err != nil {
		return "", err
	}
	if cfg.CtlSocket == "" {
		return "", errors.New(`the configuration disables the control socket (ctl_socket ""); use -socket`)
	}
	return cfg.CtlSocket, nil
}

// command is one subcommand: run returns the exit code; flags declares the
// command's own flags (the man page test compares them with the page).
type command struct {
	run   func(g globals, args []string) int
	flags func(fs *flag.FlagSet)
}

var commands = map[string]command{}

// ctlCommand adapts a control-socket command to the socket of the globals.
func ctlCommand(name string, main func(out, errOut io.Writer, socket string, args []string) int) func(globals, []string) int {
	return func(g globals, args []string) int {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
			return main(os.Stdout, os.Stderr, "", args) // help needs no socket
		}
		socket, err := g.ctlSocket()
		if err != nil {
			fmt.Fprintf(os.Stderr, "spartanctl %s: %v\n", name, err)
			return 2
		}
		return main(os.Stdout, os.Stderr, socket, args)
	}
}

// withConfig passes the global -config on to a command that has its own.
func withConfig(g globals, args []string) []string {
	if g.config == "" {
		return args
	}
	return append([]string{"-config", g.config}, args...)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int { return runWith(args, os.Stdout, os.Stderr) }

func runWith(args []string, stdout, stderr io.Writer) int {
	g, args, err := splitGlobals(args)
	if err != nil {
		fmt.Fprintf(stderr, "spartanctl: %v\n%s", err, shortUsage)
		return 2
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, shortUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, manual.Text(page))
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "spartanctl: unknown command %q\n%s", args[0], shortUsage)
		return 2
	}
	return cmd.run(g, args[1:])
}

// globalFlags are the options splitGlobals takes out wherever they are.
var globalFlags = []string{"socket", "config"}

// splitGlobals takes the global options out of args, before or after the
// command: "-socket X", "--socket X", "-socket=X" (and -config alike). A
// "--" ends the scan; it and what follows go to the command untouched.
func splitGlobals(args []string) (g globals, rest []string, err error) {
	set := func(name, v string) {
		if name == "socket" {
			g.socket = v
		} else {
			g.config = v
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !strings.HasPrefix(a, "-") || !isGlobal(name) {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return g, nil, fmt.Errorf("-%s needs a path", name)
			}
			i++
			value = args[i]
		}
		if value == "" {
			return g, nil, fmt.Errorf("-%s needs a path", name)
		}
		set(name, value)
	}
	return g, rest, nil
}

func isGlobal(name string) bool {
	return slices.Contains(globalFlags, name)
}

// newFlagSet returns the flag set of a subcommand: errors and -h go to
// errOut, -h prints the command's part of the man page.
func newFlagSet(name string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usageOf(name)) }
	return fs
}
