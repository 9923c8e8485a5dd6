#!/usr/bin/env bash
# make bench: installs what the benchmark needs, builds CoreDNS (pinned) and
# Spartan, then runs bench/cmd/dnsbench with this script's arguments, e.g.
#   bash bench/run.sh --quick
#   bash bench/run.sh --rounds 3 --rows direct,spartan,coredns --scenarios 1,2
# See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

COREDNS_VERSION=v1.15.0
TOOLS="$PWD/bench/tools"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=()
# nftables: scenario 6 drops datagrams with an nft rule; unbound: the
# extra row of the cache scenarios; util-linux: unshare, which gives the
# run a network namespace of its own.
for pkg in dnsperf nsd dnsdist dnsmasq-base nftables unbound util-linux iproute2; do
	installed "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "bench: installing ${need[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
	# A package just installed may have started its own service (unbound
	# on 127.0.0.1:53); the benchmark runs its own instances, so stop those.
	for svc in "${need[@]}"; do
		case $svc in nsd | dnsdist | unbound) systemctl disable --now "$svc" >/dev/null 2>&1 || true ;; esac
	done
fi

# CoreDNS is not in Debian: build the pinned release from the module proxy.
# A failed build is not fatal; the coredns row then reports itself missing.
if ! "$TOOLS/coredns" -version 2>/dev/null | grep -q "CoreDNS-${COREDNS_VERSION#v}"; then
	echo "bench: building CoreDNS $COREDNS_VERSION into bench/tools (takes a few minutes)" >&2
	mkdir -p "$TOOLS"
	GOBIN="$TOOLS" go install "github.com/coredns/coredns@$COREDNS_VERSION" ||
		echo "bench: CoreDNS $COREDNS_VERSION did not build; its row will be reported missing" >&2
fi

# A Spartan that does not build must stop the benchmark: measuring a stale
# binary would report figures for code that is not the code under review.
if compgen -G "cmd/spartan/*.go" >/dev/null; then
	go build -ldflags "-X main.Version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
		-o bin/spartan ./cmd/spartan
fi

mkdir -p bench/out
go build -o bench/out/dnsbench ./bench/cmd/dnsbench
# The report quotes the command line that started the run, as typed.
export DNSBENCH_COMMAND="bash bench/run.sh${*:+ $*}"
exec bench/out/dnsbench "$@"
