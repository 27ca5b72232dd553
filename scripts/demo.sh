#!/usr/bin/env bash
# The main job on the bundled default model (README's first command): `ceg4n run` refines the
# bit-widths until every box is proved, generates the no_std crate, runs it on an emulated
# Cortex-M4F board (QEMU) comparing every output with the host model bit for bit, counts
# instructions per inference, and writes ceg4n-out/run/report.json and report.html.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --release --quiet -p ceg4n
target/release/ceg4n run "$@"
