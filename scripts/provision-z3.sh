#!/usr/bin/env bash
# Provision a modern libz3 for the `z3` crate without compiling Z3 from C++.
#
# Debian's libz3 (4.8) is too old for z3 0.22 and the crate's `vendored` build takes ~40 min,
# so we take the shared library that the official PyPI wheel `z3-solver` ships and link against
# it (.cargo/config.toml points z3-sys at it; generator/build.rs adds the rpath).
# The library lives outside the checkout (the binary's rpath names it, so an installed ceg4n
# keeps working when the checkout moves or goes): in $CEG4N_Z3_DIR, by default
# ~/.local/share/ceg4n/z3-VERSION; .deps/z3 in the checkout is a link to it.
# Idempotent: does nothing when the library is already in place.
set -euo pipefail
Z3_WHEEL_VERSION="${Z3_WHEEL_VERSION:-5.4.1.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
link="$root/.deps/z3"
data_home="${XDG_DATA_HOME:-${HOME:+$HOME/.local/share}}"
# Without a home directory the library stays in the checkout (as before).
dest="${CEG4N_Z3_DIR:-${data_home:-$root/.deps/share}/ceg4n/z3-$Z3_WHEEL_VERSION}"
point_link() {
  mkdir -p "$root/.deps"
  if [ -e "$link" ] && [ ! -L "$link" ]; then rm -rf "$link"; fi
  ln -sfn "$dest" "$link"
}
if [ -f "$dest/lib/libz3.so" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$Z3_WHEEL_VERSION" ]; then
  point_link
  exit 0
fi
mkdir -p "$(dirname "$dest")"
# An earlier provisioning unpacked into the checkout itself: move it out.
if [ ! -L "$link" ] && [ -f "$link/lib/libz3.so" ] && [ "$(cat "$link/VERSION" 2>/dev/null)" = "$Z3_WHEEL_VERSION" ]; then
  rm -rf "$dest" && mv "$link" "$dest" && point_link
  exit 0
fi
command -v python3 >/dev/null || { echo "provision-z3: python3 is needed to fetch the z3-solver wheel (apt-get install -y python3 python3-pip)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "provision-z3: fetching libz3 from the z3-solver $Z3_WHEEL_VERSION wheel" >&2
python3 -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" "z3-solver==$Z3_WHEEL_VERSION"
python3 - "$tmp" "$dest.partial" <<'PY'
import glob, os, shutil, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "z3_solver-*.whl"))[0]
out = sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(("z3/lib/", "z3/include/")) and not name.endswith("/"):
            target = os.path.join(out, name[len("z3/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
echo "$Z3_WHEEL_VERSION" > "$dest.partial/VERSION"
rm -rf "$dest"
mv "$dest.partial" "$dest"
point_link
echo "provision-z3: libz3 ready in $dest (linked from .deps/z3)" >&2
