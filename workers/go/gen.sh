#!/usr/bin/env bash
# Regenerates workers/go/gen/ from protos/ with buf and the protoc-gen-go /
# protoc-gen-go-grpc versions pinned in go.mod. Deterministic: re-running it
# leaves the tree unchanged. Usage (from anywhere): workers/go/gen.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi
# Build the plugins once up front so buf's parallel invocations hit the cache.
go build -o /dev/null google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
# buf comes from the repository's npm tools (package.json at the repo root).
npx --prefix ../.. --no-install --loglevel=error buf generate --template buf.gen.yaml
gofmt -l gen | (! grep .)
