#!/usr/bin/env bash
# The main job on the bundled default model (README's first command): refine the bit-widths
# until every box is proved, generate the no_std crate, and run it on an emulated Cortex-M4F
# board (QEMU), comparing every output with the host model bit for bit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --release --quiet -p ceg4n
ceg4n="target/release/ceg4n"
model="models/iris_mlp.onnx"
out="ceg4n-out/iris"
run() { printf '\n$ %s\n' "$*"; "$@"; }
run "$ceg4n" inspect "$model"
run "$ceg4n" refine "$model" --props models/iris_props.json --data models/iris_test.csv --out "$out"
run "$ceg4n" generate --report "$out/report.json" --board mps2-an386 --out "$out/crate"
run "$ceg4n" hil --report "$out/report.json" --board mps2-an386 --out "$out/hil"
