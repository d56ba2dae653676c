#!/usr/bin/env bash
# Regenerates every language's code from protos/ (Python, Go, TypeScript). The one command for codegen:
# `make gen`. CI runs it and fails if the tree changes (tools/check-gen.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

out=sdk/multiagents/v1
find "$out" -name '*_pb2*.py*' -delete
"$PY" -m grpc_tools.protoc -I protos \
  --python_out=sdk --pyi_out=sdk --grpc_python_out=sdk \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$PY")/protoc-gen-mypy_grpc" --mypy_grpc_out=sdk \
  protos/multiagents/v1/*.proto

workers/go/gen.sh
workers/node/gen.sh
