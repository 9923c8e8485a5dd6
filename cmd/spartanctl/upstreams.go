package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spartan-dns/spartan/actors/ctl"
)

func init() { commands["upstreams"] = runUpstreams }

const upstreamsUsage = `usage: spartanctl [-socket PATH] upstreams

Prints every upstream with the routes that use it, its replies (OK),
failures and stalls since start, the latency of its good replies (mean, and
p50/p99 estimated from a histogram), and its health: SCORE is the decaying
count of recent failures (0 is healthy), RANK its whole part; the forwarder
prefers the lowest rank.

exit status: 0 printed; 1 the daemon could not be asked; 2 bad usage.
`

func runUpstreams(socket string, args []string) int {
	return upstreamsMain(os.Stdout, os.Stderr, socket, args)
}

func upstreamsMain(out, errOut io.Writer, socket string, args []string) int {
	if _, code, ok := parseCommand("upstreams", upstreamsUsage, errOut, args, "", nil); !ok {
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
