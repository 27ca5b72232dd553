#!/usr/bin/env bash
# Import and evaluation check over a CEG4N benchmark suite folder (networks/, properties/):
#   scripts/suite-check.sh ../shared/benchmarks/ceg4n [BITS]
# For every network: inspect, then eval on its property file: float logits vs the recorded `y`
# (max |diff|), and the share of property centres whose quantized class equals the float one.
set -euo pipefail
suite="${1:?usage: suite-check.sh SUITE_DIR [BITS]}"
bits="${2:-16}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet -p ceg4n --manifest-path "$root/Cargo.toml"
ceg4n="$root/target/release/ceg4n"
printf '%-30s %7s %12s %10s\n' network params max_diff "same@${bits}"
fail=0
for net in "$suite"/networks/*.onnx; do
  name="$(basename "$net" .onnx)"
  params="$("$ceg4n" inspect "$net" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params"])')" || { echo "$name: inspect failed"; fail=1; continue; }
  "$ceg4n" eval "$net" --data "$suite/properties/$name.json" --bits "$bits" --act-bits "$bits" --json \
    | python3 -c '
import json, sys
d = json.load(sys.stdin)
diff, same = d["max_abs_diff_vs_reference"], d["quantized_agreement_with_float"]
print("%-30s %7s %12.2e %10.3f %s" % (sys.argv[1], sys.argv[2], diff, same,
      "" if diff <= 1e-4 and same == 1.0 else "  <-- FAIL"))
sys.exit(0 if diff <= 1e-4 and same == 1.0 else 1)' "$name" "$params" || fail=1
done
exit $fail
