#!/usr/bin/env bash
# Fails when generated code is stale: regenerates into the tree and asks git
# whether anything under the generated folders changed.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/gen.sh
if ! git diff --quiet --exit-code -- sdk/multiagents/v1 workers/go/gen workers/node/src/gen 2>/dev/null \
   || [ -n "$(git status --porcelain -- sdk/multiagents/v1 workers/go/gen workers/node/src/gen)" ]; then
  echo "generated code is stale: run 'make gen' and commit the result" >&2
  git status --short -- sdk/multiagents/v1 workers/go/gen workers/node/src/gen >&2
  exit 1
fi
echo "generated code is fresh"
