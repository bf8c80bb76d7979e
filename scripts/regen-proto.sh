#!/usr/bin/env bash
# Regenerate the protobuf module (and its type stub) from the wire contract.
# Needs the dev extra (grpcio-tools pinned to the grpcio release in constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
    src/fedhive/transport/proto/fedhive.proto
echo "regenerated src/fedhive/transport/proto/fedhive_pb2.py{,i}"
