#!/usr/bin/env bash
# The main job on the bundled default model (README's first command).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --release --quiet -p ceg4n
ceg4n="target/release/ceg4n"
model="models/iris_mlp.onnx"
set -x
"$ceg4n" inspect "$model"
"$ceg4n" eval "$model" --data models/iris_test.csv --bits 8 --act-bits 8
"$ceg4n" eval "$model" --data models/iris_props.json --bits 4 --act-bits 8
