package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// perfResult is what the saturation scenario takes from dnsperf's summary.
type perfResult struct {
	sent, completed, lost int64
	qps                   float64
	avgLatency            float64 // seconds
	noerror               int64
	cpu                   float64 // dnsperf's own CPU seconds (utime+stime)
}

// dnsperfArgs is the closed-loop load: clients sockets with at most
// outstanding queries in flight, for dur. -t bounds the time a lost query
// holds a slot.
func dnsperfArgs(addr, queryFile string, clients, outstanding int, dur time.Duration) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"dnsperf", "-s", host, "-p", port, "-d", queryFile,
		"-c", strconv.Itoa(clients), "-q", strconv.Itoa(outstanding),
		"-l", strconv.FormatFloat(dur.Seconds(), 'f', -1, 64), "-t", "2"}
}

func runDNSPerf(ctx context.Context, argv []string, limit time.Duration) (perfResult, string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return perfResult{}, string(out), fmt.Errorf("dnsperf: %w", err)
	}
	r, err := parseDNSPerf(string(out))
	r.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return r, string(out), err
}

// parseDNSPerf reads the "Statistics:" block of dnsperf 2.x.
func parseDNSPerf(out string) (perfResult, error) {
	var r perfResult
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		switch key {
		case "Queries sent":
			r.sent, _ = strconv.ParseInt(f[0], 10, 64)
			seen++
		case "Queries completed":
			r.completed, _ = strconv.ParseInt(f[0], 10, 64)
			seen++
		case "Queries lost":
			r.lost, _ = strconv.ParseInt(f[0], 10, 64)
		case "Queries per second":
			r.qps, _ = strconv.ParseFloat(f[0], 64)
			seen++
		case "Average Latency (s)":
			r.avgLatency, _ = strconv.ParseFloat(f[0], 64)
		case "Response codes":
			for i := 0; i+1 < len(f); i++ {
				if strings.TrimSuffix(f[i], ",") == "NOERROR" {
					r.noerror, _ = strconv.ParseInt(f[i+1], 10, 64)
				}
			}
		}
	}
	if seen < 3 {
		return r, fmt.Errorf("dnsperf output has no statistics block")
	}
	return r, nil
}
