#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each.
# Usage: tests/fuzz.sh [fuzztime]   (default 20s). New crashers land in the
# package's testdata/fuzz/<Target>/ and are replayed by every `make test`.
# Every target runs even when one fails; the summary lists how long each
# ran and which failed, and the exit status is 1 if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
t="${1:-20s}"
failed=()
summary=()
for pkg in $(go list ./...); do
  targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
  for f in $targets; do
    echo "=== $pkg $f ($t)"
    start=$(date +%s)
    if go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg"; then
      result=ok
    else
      result=FAILED
      failed+=("$pkg $f")
    fi
    summary+=("$(printf '%-7s %4ss  %s %s' "$result" "$(( $(date +%s) - start ))" "${pkg#github.com/alluvium/alluvium/}" "$f")")
  done
done
echo
echo "=== fuzz summary (fuzztime $t per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${#failed[@]} target(s); crashers are in the packages' testdata/fuzz/"
  exit 1
fi
