#!/usr/bin/env bash
# The fidelity check: `ceg4n refine` on fresh scikit-learn MLPs nobody tuned for ceg4n
# (models/fidelity/, made by models/fidelity/train.py): wine, breast cancer and digits, hidden
# layers (16,) and (16, 8), 9 boxes of radius 0.01-0.05 around 3 test rows, the test split as
# --data. Prints each model's summary; reports go to OUT (default ceg4n-out/fidelity).
# Usage: scripts/fidelity-check.sh [OUT] [extra refine options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-ceg4n-out/fidelity}"
shift || true
cargo build --release --quiet -p ceg4n
status=0
for data in wine cancer digits; do
  for hidden in 16 16_8; do
    name="${data}_${hidden}"
    echo "== $name"
    target/release/ceg4n refine "models/fidelity/$name.onnx" \
      --props "models/fidelity/${name}_boxes.json" --data "models/fidelity/${data}_test.csv" \
      --out "$out/$name" --quiet "$@" || status=1
  done
done
exit $status
