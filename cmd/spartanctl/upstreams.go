package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() { commands["upstreams"] = command{run: ctlCommand("upstreams", upstreamsMain)} }

func upstreamsMain(out, errOut io.Writer, socket string, args []string) int {
	if _, code, ok := parseCommand("upstreams", errOut, args, "", nil); !ok {
		return code
	}
	resp, code := ctlCall(errOut, socket, "upstreams", ctl.Request{Cmd: ctl.CmdUpstreams})
	if resp == nil {
		return code
	}
	if len(resp.Upstreams) == 0 {
		fmt.Fprintln(out, "no upstreams configured")
		return 0
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tROUTES\tOK\tFAILURES\tSTALLS\tMEAN\tP50\tP99\tSCORE\tRANK")
	for _, u := range resp.Upstreams {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%.2f\t%d\n",
			u.Address, strings.Join(u.Routes, ","), u.Successes, u.Failures, u.Stalls,
			ms(u.Successes, u.LatencyMeanMs), ms(u.Successes, u.LatencyP50Ms), ms(u.Successes, u.LatencyP99Ms),
			u.Score, u.Rank)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(errOut, "spartanctl upstreams: %v\n", err)
		return 1
	}
	return 0
}

func ms(n uint64, v float64) string {
	if n == 0 {
		return "-"
	}
	if v < 10 {
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}
