#!/usr/bin/env bash
# One-time (idempotent) set-up shared by demo.sh and test.sh: Rust targets and libz3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  # python3 + pip only fetch the z3-solver wheel that carries libz3.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
  else
    echo "setup: python3 with pip is needed to fetch libz3 (sudo apt-get install -y python3 python3-pip)" >&2
    exit 1
  fi
fi
# rust-toolchain.toml names the targets, but rustup adds them only when it installs the
# toolchain itself; make sure they are there.
rustup target add thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf >/dev/null 2>&1 \
  || rustup target add thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf
scripts/provision-z3.sh
# QEMU runs the generated firmware in the hardware-in-the-loop tests and `ceg4n hil`.
if ! command -v qemu-system-arm >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq qemu-system-arm >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq qemu-system-arm >/dev/null; })
  else
    echo "setup: qemu-system-arm is missing (sudo apt-get install -y qemu-system-arm); QEMU tests will be skipped" >&2
  fi
fi
