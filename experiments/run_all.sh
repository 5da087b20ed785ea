#!/usr/bin/env bash
# Regenerate every figure and table in docs/figures, and the benchmark logs in docs/logs, on this machine.
#   bash experiments/run_all.sh            (about 40 minutes on 2 cores, peers installed for bench_planner)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/logs
for s in claim1_cheap_gradient claim2_forward_vs_reverse claim3_finite_differences claim4_tape_memory \
         claim5_sparse_jacobians claim6_higher_order claim7_control_flow tradeoff_curves check_exhaustive; do
  echo "== $s"
  /usr/bin/time -f "$s: %e s" python3 -W ignore "experiments/$s.py" 2>&1 | tee "docs/logs/$s.txt"
done
for b in bench_planner bench_optimal bench_ad bench_executor bench_torch; do
  echo "== $b"
  python3 -W ignore "experiments/$b.py" 2>&1 | tee "docs/logs/$b.txt"
done
