#!/usr/bin/env bash
# The main job on the bundled default model (README's first command). It grows with the
# project: today import, quantization at two bit-widths, and proofs per box.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --release --quiet -p ceg4n
ceg4n="target/release/ceg4n"
model="models/iris_mlp.onnx"
run() { printf '\n$ %s\n' "$*"; "$@"; }
run "$ceg4n" inspect "$model"
run "$ceg4n" eval "$model" --data models/iris_test.csv --bits 8 --act-bits 8
run "$ceg4n" eval "$model" --data models/iris_test.csv --bits 4 --act-bits 8
run "$ceg4n" verify "$model" --props models/iris_props.json --bits 8 --act-bits 8 \
  || echo "(not every box is proved at these bits; refinement will search for bits that are)"
