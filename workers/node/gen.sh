#!/usr/bin/env bash
# Regenerates workers/node/src/gen/ from protos/ with buf and the ts-proto
# version pinned in workers/node/package-lock.json. Deterministic: re-running
# it leaves the tree unchanged. Usage (from anywhere): workers/node/gen.sh
set -euo pipefail
cd "$(dirname "$0")"
# The plugin comes from this package's dev dependencies.
if [ ! -x node_modules/.bin/protoc-gen-ts_proto ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# buf comes from the repository's npm tools (package.json at the repo root).
npx --prefix ../.. --no-install --loglevel=error buf generate --template buf.gen.yaml
