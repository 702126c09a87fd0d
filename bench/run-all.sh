#!/usr/bin/env bash
# Runs every benchmark once and prints the Markdown rows that docs/benchmarks.md records.
# Run it alone on a quiet machine (no builds, tests or other CPU-heavy processes): OpenMP's busy-waiting makes any
# neighbour distort the figures badly. Usage: bash bench/run-all.sh [STORIES_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
stories=${1:-../shared/models/stories260K}
for project in bench/SharpTune.Bench bench/ServerLoad bench/DataCleanBench; do dotnet build -c Release "$project" >/dev/null; done
bench="dotnet bench/SharpTune.Bench/bin/Release/net10.0/SharpTune.Bench.dll"

echo "## Training (tokens/s, model GFLOP/s, MFU against today's measured matmul peak and DESIGN.md's, peak RSS GiB)"
echo "| config | method | dtype | batch×seq | tokens/s | GFLOP/s | MFU (measured peak) | MFU (design peak) | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for config in S M; do
  for dtype in f32 bf16; do
    for method in full lora; do $bench training $config $method $dtype 6 2>/dev/null; done
  done
done
for method in dora prompt-tuning prefix-tuning adapter ia3; do $bench training S $method bf16 6 2>/dev/null; done
echo "PyTorch peer on the same machine (Debian's python3-torch 1.13):"
for config in S M; do for method in full lora; do /usr/bin/python3 bench/pytorch-peer/train_peer.py $config $method 6 || true; done; done

echo "## Generation (prefill and decode tokens/s, ms per decode step, peak RSS GiB)"
echo "| model | dtype | batch | prefill tok/s | decode tok/s | ms/step | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for model in "$stories" S M; do
  for dtype in f32 bf16; do
    for batch in 1 8; do $bench generation "$model" $dtype $batch 128 64 2>/dev/null; done
  done
done

echo "## Evaluation (examples/s)"
echo "| config | batch | prompt+answer tokens | perplexity ex/s | generation ex/s |"
echo "|---|---|---|---|---|"
$bench evaluation S 64 8 96 32 2>/dev/null

echo "## Tokenizer load (tokenizer.json to first encode, fresh process, before libtorch loads)"
echo "| tokenizer | vocabulary | load time | peak RSS | RSS before |"
echo "|---|---|---|---|---|"
$bench tokenizer-load "${stories%/models/stories260K}/tokenizers/gemma3" 2>/dev/null

echo "## Data clean (near-dedup)"
dotnet bench/DataCleanBench/bin/Release/net10.0/DataCleanBench.dll 1000000 --scaling

echo "## Server"
dotnet bench/ServerLoad/bin/Release/net10.0/ServerLoad.dll --model "$stories" --clients 32 --requests 10 --max-tokens 32
