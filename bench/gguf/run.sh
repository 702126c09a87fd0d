#!/usr/bin/env bash
# GGUF size and llama.cpp speed table for docs/deploy.md. Run ALONE on a quiet machine (no builds, tests or other jobs).
# Needs Node.js 20+ and npm (bash build/prerequisites.sh node).
set -euo pipefail
cd "$(dirname "$0")/../.."
st() { dotnet run --project src/SharpTune.Cli -c Release --no-build -- "$@"; }
dotnet build -c Release -v q >/dev/null
pkg=tests/SharpTune.Tests/Export/LlamaCpp
[ -d "$pkg/node_modules/node-llama-cpp" ] || (cd "$pkg" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund)
st quickstart >/dev/null   # builds (or reuses) quickstart/base and quickstart/run/final
out=$(mktemp -d)
for type in f16 q8_0 q6_k q5_k_m q4_k_m q4_0; do
  st export gguf --model quickstart/base --adapter quickstart/run/final --out "$out/quickstart-$type.gguf" --type "$type" >/dev/null
done
cp bench/gguf/speed.mjs "$pkg/speed.mjs"
trap 'rm -f "$pkg/speed.mjs"; rm -rf "$out"' EXIT
(cd "$pkg" && OMP_WAIT_POLICY=PASSIVE node speed.mjs "$out"/quickstart-*.gguf)
