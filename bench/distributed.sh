#!/usr/bin/env bash
# Data-parallel training on one machine: the same global batch (4 × 256 tokens per step) on config M, bf16, LoRA and
# full, as 1 process × 2 threads and as 2 MPI ranks × 1 thread. Prints the Markdown rows docs/distributed.md records.
# Run it alone on a quiet machine (see bench/run-all.sh). Needs Open MPI (bash build/prerequisites.sh openmpi).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release bench/SharpTune.Bench >/dev/null
bench="bench/SharpTune.Bench/bin/Release/net10.0/SharpTune.Bench.dll"
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
steps=${STEPS:-6}
echo "| config | method | dtype | ranks × threads | global batch×seq | tokens/s | s/step | all-reduce s/step | all-reduced per step |"
echo "|---|---|---|---|---|---|---|---|---|"
for method in lora full; do
  SHARPTUNE_THREADS=2 OMP_WAIT_POLICY=PASSIVE dotnet "$bench" data-parallel M $method bf16 "$steps" 4 256
  SHARPTUNE_THREADS=1 OMP_WAIT_POLICY=PASSIVE mpirun "${root[@]}" -np 2 --bind-to none -x SHARPTUNE_THREADS -x OMP_WAIT_POLICY \
    dotnet "$bench" data-parallel M $method bf16 "$steps" 4 256
done
