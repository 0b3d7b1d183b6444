#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each.
# Usage: tests/fuzz.sh [fuzztime]   (default 20s). New crashers land in the
# package's testdata/fuzz/<Target>/ and are replayed by every `make test`.
# Every target runs even when one fails; the summary lists how long each
# ran and which failed, and the exit status is 1 if any did — or if a
# package's tests do not build (its targets could not even be listed), or
# if no target was found at all.
set -uo pipefail
cd "$(dirname "$0")/.."
t="${1:-20s}"
failed=()
summary=()
pkgs=$(go list ./...) || { echo "go list failed"; exit 1; }
for pkg in $pkgs; do
  if ! listing=$(go test -list '^Fuzz' "$pkg" 2>&1); then
    echo "=== $pkg: its tests do not build"
    echo "$listing"
    failed+=("$pkg (does not build)")
    summary+=("$(printf '%-7s %4ss  %s %s' BUILD 0 "${pkg#github.com/alluvium/alluvium/}" "(tests do not build)")")
    continue
  fi
  targets=$(grep '^Fuzz' <<<"$listing" || true)
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
if [ ${#summary[@]} -eq 0 ]; then
  echo "FAILED: no fuzz target found"
  exit 1
fi
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${#failed[@]} target(s); crashers are in the packages' testdata/fuzz/"
  exit 1
fi
