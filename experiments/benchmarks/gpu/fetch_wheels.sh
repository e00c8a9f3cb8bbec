#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .whl/ at the repository root (run here, with
# network access to PyPI; the GPU machine has none).
#
#   bash experiments/benchmarks/gpu/fetch_wheels.sh
#
# The GPU machine (Python 3.12, x86-64) already has torch 2.11.0, torchaudio 2.11.0,
# pytorch-lightning, torchmetrics, numpy, scipy, scikit-learn, numba, pandas, matplotlib,
# rich, joblib, lazy-loader, msgpack, pyyaml, filelock, requests, packaging and
# typing-extensions. What `import ser_lightning.train`, the five seed recipes and
# `ser_lightning.report` need beyond that is listed below, at the versions of
# requirements.lock. Wheels only (--no-deps: every needed package is named here); the one
# package PyPI has only as a source archive (antlr4-python3-runtime, pure Python) is built
# into a wheel here. The whole folder travels with the working tree, so it must stay small.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DEST=.whl
PIP=${PIP:-python3 -m pip}

# the packages missing on the GPU machine (names as in requirements.lock)
PACKAGES=(
    hydra-core omegaconf antlr4-python3-runtime   # configs
    librosa audioread pooch platformdirs decorator  # handcrafted68 features, the baseline loop
    soundfile cffi pycparser soxr                   # decoding
    audiomentations numpy-minmax numpy-rms python-stretch  # waveform augmentation
)
SOURCE_ONLY=(antlr4-python3-runtime)

# keep the wheels out of git (the exclude file is per checkout; .gitignore may list it too)
if ! git check-ignore -q "$DEST/" 2>/dev/null; then
    echo "/$DEST/" >>"$(git rev-parse --git-path info/exclude)"
fi
mkdir -p "$DEST"

locked() {  # the version requirements.lock pins for a package
    local v
    v=$(grep -iE "^$1==" requirements.lock | head -1 | sed -E 's/^[^=]+==([^ ;\\]+).*/\1/')
    [[ -n "$v" ]] || { echo "error: $1 is not in requirements.lock" >&2; exit 1; }
    echo "$v"
}

PLATFORMS=()
for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
    manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${p}_x86_64")
done

# pip's notes on local index folders of this machine's pip configuration are noise here
quiet() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

for name in "${PACKAGES[@]}"; do
    version=$(locked "$name")
    if [[ " ${SOURCE_ONLY[*]} " == *" $name "* ]]; then
        # pure Python, published as a source archive only: build the (platform-free) wheel here
        quiet $PIP wheel -q --no-deps --no-binary "$name" -w "$DEST" "$name==$version"
    else
        quiet $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${PLATFORMS[@]}" -d "$DEST" "$name==$version"
    fi
done

# one version of each package: two wheels of one name stop the whole install there
dupes=$(ls "$DEST"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z' 'a-z' | sort | uniq -d)
[[ -z "$dupes" ]] || { echo "error: several wheels of: $dupes (empty $DEST and rerun)" >&2; exit 1; }

echo "wheels in $DEST:"
ls -l "$DEST"/*.whl | awk '{printf "  %8.1f KiB  %s\n", $5 / 1024, $9}'
du -cb "$DEST"/*.whl | tail -1 | awk '{printf "total: %.1f MiB in '"$(ls "$DEST"/*.whl | wc -l)"' wheels\n", $1 / 1048576}'
