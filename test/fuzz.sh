#!/usr/bin/env bash
# Runs every Go fuzz target of the module (`make fuzz`), one at a time, each
# for FUZZTIME (default 30s; any -fuzztime value: "2m", "100000x"), and fails
# if any of them finds a failing input. The targets are discovered with
# `go test -list`, so a new FuzzXxx is picked up without editing this file.
#
# Environment:
#   FUZZTIME       time (or "Nx" iterations) per target, default 30s
#   FUZZ_PKGS      packages to search for targets, default ./...
#   FUZZ_MATCH     extended regexp a target's name must match, default: all
#   FUZZ_PARALLEL  fuzzing workers per target (-parallel), default GOMAXPROCS
#   FUZZ_LOG_DIR   where each target's full output goes, default a temp dir
#   GO             the go command, default go
#
# A failing input is written by `go test` under the package's
# testdata/fuzz/FuzzXxx/: fix the bug, keep the file (it becomes a seed that
# `go test` runs every time), and commit it.
set -euo pipefail

cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ_PKGS=${FUZZ_PKGS:-./...}
FUZZ_MATCH=${FUZZ_MATCH:-.}
FUZZ_LOG_DIR=${FUZZ_LOG_DIR:-$(mktemp -d /tmp/spartan-fuzz.XXXXXX)}
mkdir -p "$FUZZ_LOG_DIR"

# A per-target bound on the whole `go test` run, so that a hang in setup or
# in the engine cannot hold `make fuzz` forever: FUZZTIME plus five minutes
# when it is a plain duration, an hour otherwise.
timeout_for() {
	local t=$1
	case $t in
	*[0-9]s) echo "$((${t%s} + 300))s" ;;
	*[0-9]m) echo "$((${t%m} + 5))m" ;;
	*[0-9]h) echo "$((${t%h} + 1))h" ;;
	*) echo 1h ;;
	esac
}

# `go test -list` prints a package's matching tests, then "ok <pkg> <time>".
# shellcheck disable=SC2086 # FUZZ_PKGS is a list of patterns
if ! listing=$($GO test -list '^Fuzz' $FUZZ_PKGS 2>&1); then
	printf '%s\n' "$listing" >&2
	echo "fuzz.sh: listing the fuzz targets failed (does everything build?)" >&2
	exit 1
fi
mapfile -t targets < <(
	printf '%s\n' "$listing" |
		awk '/^Fuzz/ { t[n++] = $1; next }
		     /^ok/  { for (i = 0; i < n; i++) print $2, t[i]; n = 0 }' |
		awk -v re="$FUZZ_MATCH" '$2 ~ re'
)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found in $FUZZ_PKGS matching $FUZZ_MATCH" >&2
	exit 1
fi

parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
	parallel=(-parallel "$FUZZ_PARALLEL")
fi

echo "fuzz.sh: ${#targets[@]} targets, $FUZZTIME each, logs in $FUZZ_LOG_DIR"
failed=()
flaked=()
summary=()
for entry in "${targets[@]}"; do
	pkg=${entry% *}
	target=${entry#* }
	log="$FUZZ_LOG_DIR/$target.log"
	echo "=== $target ($pkg)"
	dir=$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$target
	before=$(ls "$dir" 2>/dev/null || true)
	start=$(date +%s)
	status=ok
	if ! $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" \
		-timeout "$(timeout_for "$FUZZTIME")" "${parallel[@]}" "$pkg" >"$log" 2>&1; then
		status=FAIL
		# Go before 1.27 can fail a duration-bounded run as it ends, with
		# "context deadline exceeded" and no failing input (a race in the
		# coordinator, golang/go#75804). A real failure always writes its
		# input under testdata/fuzz (or names a failing seed).
		after=$(ls "$dir" 2>/dev/null || true)
		if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" &&
			! grep -q -- "--- FAIL: $target/" "$log" && ! grep -q '^panic:' "$log"; then
			status=flake
			flaked+=("$target")
		else
			failed+=("$target")
		fi
	fi
	secs=$(($(date +%s) - start))
	# The engine's last progress line: "fuzz: elapsed: 30s, execs: N (R/sec),
	# new interesting: K (total: T)".
	progress=$(grep '^fuzz: elapsed' "$log" | tail -n 1 | sed 's/^fuzz: //' || true)
	summary+=("$(printf '%-5s %-20s %4ss  %s' "$status" "$target" "$secs" "${progress:-no progress line}")")
	echo "${summary[-1]}"
	if [ "$status" = flake ]; then
		echo "(ended with Go's spurious \"context deadline exceeded\" and no failing input: golang/go#75804; not counted)"
	fi
	if [ "$status" = FAIL ]; then
		# The failure, the failing input's file, and how to rerun it.
		grep -E -- '--- FAIL|Failing input written to|To re-run:|go test -run=|panic:|fuzz_test.go:[0-9]+' "$log" | head -n 20 || true
		echo "(full output: $log)"
	fi
done

echo
echo "fuzz.sh summary (FUZZTIME=$FUZZTIME):"
printf '%s\n' "${summary[@]}"
if [ ${#flaked[@]} -gt 0 ]; then
	echo "fuzz.sh: ended by the Go coordinator race (golang/go#75804), not failures: ${flaked[*]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: FAILED: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets passed"
