#!/usr/bin/env bash
# Decode next to llama.cpp on the same machine, models and settings (batch 1, prompt 128, 64 new, 2 threads):
# SharpTune's `bench generation` rows, then llama.cpp's rows for GGUF exports of the same weights (`sharptune export
# gguf`), measured by bench/llamacpp-peer/peer.c over llama.cpp's prebuilt CPU library from npm
# (@node-llama-cpp/linux-x64, pinned by tests/SharpTune.Tests/Export/LlamaCpp/package-lock.json) with one persistent
# thread pool as llama-bench runs it; then the server's single stream next to the library's (bench/ServerLoad).
# Pairs: M bf16 / F16, M int8 / Q8_0 (our head in bf16 as bitsandbytes keeps it, then quantized as well, as Q8_0 stores
# it), M nf4 / Q4_0, stories260K f32 / F32.
# Run it ALONE on a quiet machine (no builds, tests or other jobs). Needs gcc, git, Node.js and npm.
# Usage: [PAIRS=N] bash bench/decode-peer.sh [STORIES_DIR]   (PAIRS: see the end)
set -euo pipefail
cd "$(dirname "$0")/.."
stories=${1:-../shared/models/stories260K}
threads=${THREADS:-2}
for project in src/SharpTune.Cli bench/SharpTune.Bench bench/ServerLoad; do dotnet build -c Release "$project" >/dev/null; done
bench="dotnet bench/SharpTune.Bench/bin/Release/net10.0/SharpTune.Bench.dll"
st="dotnet src/SharpTune.Cli/bin/Release/net10.0/SharpTune.Cli.dll"

# llama.cpp: the pinned npm package, and the headers of the llama.cpp release it was built from.
pkg=tests/SharpTune.Tests/Export/LlamaCpp
bins=$pkg/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
ls "$bins"/libllama*.so >/dev/null 2>&1 || (cd "$pkg" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund >/dev/null)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash bench/llamacpp-peer/headers.sh "$pkg/node_modules/node-llama-cpp" "$work/llama.cpp"
bins=$(cd "$bins" && pwd)
gcc -O2 -std=gnu11 -o "$work/peer" bench/llamacpp-peer/peer.c -I"$work/llama.cpp/include" -I"$work/llama.cpp/ggml/include" \
  "$(ls "$bins"/libllama*.so | grep -v common | head -1)" "$(ls "$bins"/libggml.*so | head -1)" "$bins/libggml-base.so" -Wl,-rpath,"$bins"
peer() { PEER_BACKEND_DIR="$bins" "$work/peer" "$@" "$threads" 128 64 3; }
# batched_peer FILE NAME DTYPE THREADS BATCH: the server benchmark's shape (prompt 24, 32 new), five repetitions.
batched_peer() { PEER_BACKEND_DIR="$bins" "$work/peer" "$1" "$2" "$3" "$4" 24 32 5 "$5"; }

# The M checkpoint (random weights, seed 0, bf16) with a tokenizer for the GGUF metadata (ids past it are padding).
$bench checkpoint M "$work/M" >/dev/null
cp "$stories"/tokenizer.json "$stories"/tokenizer_config.json "$work/M/"
for type in f16 q8_0 q4_0; do $st export gguf --model "$work/M" --out "$work/M-$type.gguf" --type "$type" >/dev/null; done
$st export gguf --model "$stories" --out "$work/stories260K-f32.gguf" --type f32 >/dev/null

echo "## Decode next to llama.cpp (batch 1, prompt 128, 64 new, $threads threads)"
echo "| model | dtype | batch | prefill tok/s | decode tok/s | ms/step | peak RSS GiB |"
echo "|---|---|---|---|---|---|---|"
$bench generation M bf16 1 128 64 2>/dev/null
peer "$work/M-f16.gguf" "M (llama.cpp)" F16
$bench generation M bf16 1 128 64 int8 2>/dev/null
$bench generation M bf16 1 128 64 int8+head 2>/dev/null
peer "$work/M-q8_0.gguf" "M (llama.cpp)" Q8_0
$bench generation M bf16 1 128 64 nf4 2>/dev/null
peer "$work/M-q4_0.gguf" "M (llama.cpp)" Q4_0
$bench generation "$stories" f32 1 128 64 2>/dev/null
peer "$work/stories260K-f32.gguf" "stories260K (llama.cpp)" F32

echo "## Server single stream next to the library (stories260K)"
dotnet bench/ServerLoad/bin/Release/net10.0/ServerLoad.dll --model "$stories" --clients 8 --requests 4 --max-tokens 32 --levels 1,8

# What batching eight sequences buys each engine without a server: one row against eight rows decoded together, prompt
# 24 and 32 new as in the server's rows; llama.cpp's sequences share one KV buffer as llama-server's parallel slots do.
# stories260K (per-step overhead dominates) on 2 threads and on 1 (the server leaves one core to its HTTP work), then M
# in 16-bit (weight streaming dominates).
echo "## Batched decode next to llama.cpp (prompt 24, 32 new)"
echo "| model | dtype | batch | prefill tok/s | decode tok/s | ms/step | peak RSS GiB |"
echo "|---|---|---|---|---|---|---|"
for batch in 1 8; do $bench generation "$stories" f32 "$batch" 24 32 2>/dev/null; done
for t in "$threads" 1; do
  for batch in 1 8; do batched_peer "$work/stories260K-f32.gguf" "stories260K (llama.cpp, $t thread$([ "$t" = 1 ] || echo s))" F32 "$t" "$batch"; done
done
for batch in 1 8; do $bench generation M bf16 "$batch" 24 32 2>/dev/null; done
for batch in 1 8; do batched_peer "$work/M-f16.gguf" "M (llama.cpp)" F16 "$threads" "$batch"; done

# PAIRS=N (default 0): the M bf16 / F16 and int8 / Q8_0 pairs N more times, ours right before llama.cpp's (int8 with the
# head in bf16, as bitsandbytes keeps it, and quantized, as Q8_0 stores it, both against the same Q8_0 run), then every
# pair's ratio and their median. The machine's memory bandwidth moves by a quarter within minutes, both engines' with
# it, so one pair is no verdict on which decodes faster.
pairs=${PAIRS:-0}
if [ "$pairs" -gt 0 ]; then
  decode_rate() { awk -F'|' '/^\|/ {gsub(/[ ,]/, "", $6); print $6}'; }
  # pair LABEL OURS THEIRS FILE: prints the pair's row and keeps its ratio in FILE.
  pair() {
    local r
    r=$(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.2f", a / b}')
    echo "$r" >> "$4"
    echo "| $1 | $2 | $3 | $r× |"
  }
  median() { sort -g "$1" | awk '{v[NR] = $1} END {printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  echo "## Alternate pairs ($pairs), decode tok/s"
  echo "| pair | ours | llama.cpp | ratio |"
  echo "|---|---|---|---|"
  : > "$work/bf16.ratios"; : > "$work/int8.ratios"; : > "$work/int8head.ratios"
  for ((i = 1; i <= pairs; i++)); do
    ours=$($bench generation M bf16 1 128 64 2>/dev/null | decode_rate)
    theirs=$(peer "$work/M-f16.gguf" "M (llama.cpp)" F16 | decode_rate)
    pair "M bf16 / F16" "$ours" "$theirs" "$work/bf16.ratios"
    ours=$($bench generation M bf16 1 128 64 int8 2>/dev/null | decode_rate)
    withHead=$($bench generation M bf16 1 128 64 int8+head 2>/dev/null | decode_rate)
    theirs=$(peer "$work/M-q8_0.gguf" "M (llama.cpp)" Q8_0 | decode_rate)
    pair "M int8, bf16 head / Q8_0" "$ours" "$theirs" "$work/int8.ratios"
    pair "M int8, head quantized / Q8_0" "$withHead" "$theirs" "$work/int8head.ratios"
  done
  echo
  echo "Median ratios: M bf16 / F16 $(median "$work/bf16.ratios")×, M int8 (bf16 head) / Q8_0 $(median "$work/int8.ratios")×," \
    "M int8 (head quantized) / Q8_0 $(median "$work/int8head.ratios")×"
fi
