#!/usr/bin/env bash
# Hot-path micro benchmarks (no competitors): the whole UDP path through a
# listener and the forwarder against in-process reflector upstreams, and the
# cost of one upstream socket. Writes bench/HOTPATH.md with the exact command.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-50000x}
count=${COUNT:-3}
cmd="go test -run '^\$' -bench '^Benchmark(UDPForward|UDPCacheHit|DialUDP|Hit)\$' -benchmem -benchtime $benchtime -count $count ./actors/listener ./actors/forwarder ./actors/forwarder/cache"
out=$(eval "$cmd" 2>&1)
{
	echo "# Spartan hot-path benchmarks"
	echo
	echo "Written by \`bench/hotpath.sh\` (\`make bench-hotpath\`) at $(date -u '+%Y-%m-%d %H:%M UTC'). Rerun it; do not edit by hand."
	echo
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $(go version)"
	echo "- spartan: git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "- command: \`$cmd\`"
	echo
	echo "BenchmarkUDPForward: closed-loop clients (1, 16, 64) send UDP queries to one listener (its event"
	echo "loops); each query is raced to two reflector upstreams (\`test/dnstest\`), in the same process."
	echo "qps, p50/p99 are as the clients see them. BenchmarkDialUDP: the socket of one upstream query, each"
	echo "with a fresh random port: net.DialUDP+close, the goroutine race's raw dialer+close, the loop's"
	echo "raw socket (IP_RECVERR)+epoll_ctl+port+close (loop-fresh), and what the loop does, a port and a disconnect of a"
	echo "recycled socket (loop-recycled). BenchmarkUDPCacheHit: BenchmarkUDPForward with the cache on, every"
	echo "query after the first a hit answered by the loop that read it (allocs/op there are the whole process's,"
	echo "clients included). BenchmarkHit: the cache's own share of a hit (parse the key, look up, render"
	echo "ID, case and TTLs), serial and one goroutine per P on 1024 names; it must show 0 allocs/op."
	echo
	echo '```'
	echo "$out" | grep -E '^(Benchmark|goos|goarch|cpu|pkg)'
	echo '```'
} > bench/HOTPATH.md
cat bench/HOTPATH.md
