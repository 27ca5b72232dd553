#!/usr/bin/env bash
# The main job on the bundled default model (README's first command): refine the bit-widths
# until every box is proved, generate the no_std crate for a Cortex-M4F board, check it
# bit for bit against the host model and build it for the board's target.
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
cd "$out/crate"
run cargo test --offline --quiet
run cargo build --offline --release --quiet --target thumbv7em-none-eabihf
echo
echo "crate: $out/crate (builds for thumbv7em-none-eabihf; logits bit-exact with the host model)"
