#!/usr/bin/env bash
# GRPO reward benchmark: examples/grpo.yaml on the quickstart base must raise the mean reward by at least half of its
# headroom (1 − starting reward) within 15 minutes on 2 cores. Prints the reward curve (per 10 steps) with generation
# and optimisation seconds per step, and PASS/FAIL. Run it alone on a quiet machine (no builds, tests or other
# CPU-heavy processes). Usage: bash bench/grpo-reward.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-grpo}
dotnet build -c Release src/SharpTune.Cli >/dev/null
st="dotnet src/SharpTune.Cli/bin/Release/net10.0/SharpTune.Cli.dll"
[ -f quickstart/base/config.json ] || $st quickstart >/dev/null   # builds quickstart/base and quickstart/data
rm -rf "$out"
start=$(date +%s)
OMP_WAIT_POLICY=PASSIVE $st train --config examples/grpo.yaml --output "$out" >/dev/null
elapsed=$(( $(date +%s) - start ))
python3 - "$out/metrics.jsonl" "$elapsed" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
elapsed = int(sys.argv[2])
start = sum(r["reward"] for r in rows[:5]) / min(5, len(rows))
end = sum(r["reward"] for r in rows[-5:]) / min(5, len(rows))
gen = sum(r.get("time/generation_s", 0) for r in rows) / len(rows)
opt = sum(r.get("time/optimization_s", 0) for r in rows) / len(rows)
print("| step | reward | val_reward | generation s | optimisation s |")
print("|---|---|---|---|---|")
for r in rows:
    if r["step"] == 1 or r["step"] % 10 == 0:
        val = f'{r["val_reward"]:.3f}' if "val_reward" in r else ""
        print(f'| {r["step"]} | {r["reward"]:.3f} | {val} | {r.get("time/generation_s", 0):.2f} | {r.get("time/optimization_s", 0):.2f} |')
headroom = 1.0 - start
ok = end - start >= headroom / 2 and elapsed <= 15 * 60
print(f"reward {start:.3f} -> {end:.3f} (first/last 5 steps), headroom {headroom:.3f}, rise {end - start:.3f}; "
      f"{elapsed} s in all; per step {gen:.2f} s generating, {opt:.2f} s optimising: {'PASS' if ok else 'FAIL'}")
PY
