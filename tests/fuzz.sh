#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each.
# Usage: tests/fuzz.sh [fuzztime]   (default 20s). New crashers land in the
# package's testdata/fuzz/<Target>/ and are replayed by every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-20s}"
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "=== $pkg $f ($t)"
    go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg"
  done
done
