package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() {
	commands["cache"] = command{run: ctlCommand("cache", cacheMain), flags: func(fs *flag.FlagSet) { cacheFlags(fs) }}
}

func cacheFlags(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print the statistics as JSON")
}

func cacheMain(out, errOut io.Writer, socket string, args []string) int {
	if len(args) > 0 && args[0] == "flush" {
		rest := args[1:]
		switch {
		case len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help"):
			fmt.Fprint(errOut, usageOf("cache"))
			return 0
		case len(rest) > 1:
			fmt.Fprintf(errOut, "spartanctl cache flush: unexpected argument %q\n%s", rest[1], usageOf("cache"))
			return 2
		}
		name := ""
		if len(rest) == 1 {
			name = rest[0]
		}
		resp, code := ctlCall(errOut, socket, "cache flush", ctl.Request{Cmd: ctl.CmdCacheFlush, Name: name})
		if resp == nil {
			return code
		}
		n := 0
		if resp.Flushed != nil {
			n = *resp.Flushed
		}
		fmt.Fprintf(out, "%d entries flushed\n", n)
		return 0
	}
	var asJSON *bool
	if _, code, ok := parseCommand("cache", errOut, args, "", func(fs *flag.FlagSet) { asJSON = cacheFlags(fs) }); !ok {
		return code
	}
	resp, code := ctlCall(errOut, socket, "cache", ctl.Request{Cmd: ctl.CmdCache})
	if resp == nil {
		return code
	}
	if resp.Cache == nil {
		fmt.Fprintln(errOut, "spartanctl cache: the daemon sent no statistics")
		return 1
	}
	s := resp.Cache
	if *asJSON {
		enc := json.NewEncoder(out)
		if err := enc.Encode(s); err != nil {
			fmt.Fprintf(errOut, "spartanctl cache: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "entries\t%d\nbytes\t%d\nhits\t%d\nmisses\t%d\nstale\t%d\nprefetches\t%d\ncoalesced\t%d\nevictions\t%d\n",
		s.Entries, s.Bytes, s.Hits, s.Misses, s.Stale, s.Prefetches, s.Coalesced, s.Evictions)
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(errOut, "spartanctl cache: %v\n", err)
		return 1
	}
	return 0
}
