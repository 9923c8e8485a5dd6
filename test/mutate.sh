#!/usr/bin/env bash
# Mutation testing of the decision code (`make mutate`; not part of `make
# test`). Runs gremlins (pinned as a tool in go.mod) once per scope below:
# the files that hold a decision, mutated one change at a time, each mutant
# checked by the fast unit tests that guard those files (the -run filter),
# never the end-to-end suites. Writes the score and every surviving mutant
# to docs/MUTATION.md (test/mutate: the report, with the reasons kept in
# test/mutate/survivors.txt).
#
# Environment:
#   MUTATE_WORKERS  parallel mutants, default 2
#   MUTATE_COEFF    gremlins --timeout-coefficient for every scope, instead
#                   of each scope's own (below): a mutant's test run may take
#                   this many times the clean run before it counts as timed out
#   MUTATE_OUT      where the per-scope JSON results go, default a temp dir
#   GO              the go command, default go
set -euo pipefail

cd "$(dirname "$0")/.."

GO=${GO:-go}
WORKERS=${MUTATE_WORKERS:-2}
OUT=${MUTATE_OUT:-$(mktemp -d /tmp/spartan-mutate.XXXXXX)}
mkdir -p "$OUT"

# name ; package ; files NOT mutated (regexp on the path; gremlins also
# walks a package's subdirectories, so forwarder leaves cache/ to its own
# scope) ; tests that guard
# the rest ; timeout coefficient (gremlins allows a mutant's test run this
# many times the clean coverage run; generous where the tests take about a
# second, since the mutant's rebuild is then most of the run)
SCOPES=(
  "forwarder;./actors/forwarder;((datagram|local|loop|rawdial|rawsys|udpsock|upsock|stats)\.go|(^|/)cache/.*)$;^(Test|Fuzz);${MUTATE_COEFF:-5}"
  "state;./actors/state;(actor|snapshot|latency)\.go$;^(Test|Fuzz);${MUTATE_COEFF:-40}"
  "listener;./actors/listener;(udp|reuseport)\.go$;^(Test|Fuzz);${MUTATE_COEFF:-10}"
  "cache;./actors/forwarder/cache;(doc|stats)\.go$;^(Test|Fuzz);${MUTATE_COEFF:-40}"
)

start=$(date +%s)
args=()
for s in "${SCOPES[@]}"; do
  IFS=';' read -r name pkg exclude run coeff <<<"$s"
  echo "== $name: $pkg (tests $run)"
  # GOFLAGS carries the -run filter to both the coverage run and every
  # mutant's test run (gremlins has no flag for it), and -count=1: a cached
  # coverage run takes a second, and gremlins' timeout is a multiple of it.
  GOFLAGS="-run=$run -count=1" "$GO" tool gremlins unleash --silent \
    --workers "$WORKERS" --timeout-coefficient "$coeff" \
    -E "$exclude" -o "$OUT/$name.json" "$pkg"
  args+=("$name=$pkg=$exclude=$run=$coeff=$OUT/$name.json")
done
elapsed=$(( $(date +%s) - start ))

"$GO" run ./test/mutate -elapsed "${elapsed}s" -workers "$WORKERS" \
  -survivors test/mutate/survivors.txt -o docs/MUTATION.md "${args[@]}"
echo "wrote docs/MUTATION.md (results in $OUT)"
