#!/usr/bin/env bash
# Install Fashion-MNIST's four .gz files into data/fashion-mnist/ (or $1), offline if possible.
#
# Idempotent: does nothing when the files are already there. Otherwise copies them from the
# Debian package dataset-fashion-mnist if installed (/usr/share/datasets/fashion-mnist/), else
# fetches that package with `apt-get download` (no root needed) and unpacks it with dpkg-deb.
# Files are staged in a temporary folder next to the destination and moved into place, so an
# interrupted run leaves no half-written file. If none of this works, says how to get the
# data and exits 0 (the tests that need it skip).
set -euo pipefail

dest=${1:-data/fashion-mnist}
system_dir=${FASHION_MNIST_SYSTEM_DIR:-/usr/share/datasets/fashion-mnist}
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

has_all() {
    local f
    for f in "${files[@]}"; do [[ -s "$1/$f" ]] || return 1; done
}

how_to_get_it() {
    cat <<MSG
Fashion-MNIST is not installed and could not be fetched ($1). To get it, either
  - install the Debian package: sudo apt-get install dataset-fashion-mnist, then run make data
  - or copy the four files (${files[*]}) into $dest/
  - or point spr.data.fashion_mnist(root=...) at a torchvision root (holding FashionMNIST/raw/)
Tests that need Fashion-MNIST will be skipped.
MSG
}

if has_all "$dest"; then
    echo "Fashion-MNIST is already in $dest/"
    exit 0
fi

mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$(dirname "$dest")/.get-data.XXXXXX")  # same file system: mv is atomic
trap 'rm -rf "$tmp"' EXIT

if has_all "$system_dir"; then
    src=$system_dir
    echo "Copying Fashion-MNIST from $src/"
elif command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    echo "Fetching the Debian package dataset-fashion-mnist with apt-get download"
    if ! (cd "$tmp" && apt-get download -q dataset-fashion-mnist); then
        how_to_get_it "apt-get download dataset-fashion-mnist failed"
        exit 0
    fi
    dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/pkg"
    src=$tmp/pkg/usr/share/datasets/fashion-mnist
    if ! has_all "$src"; then
        how_to_get_it "the package has no $src"
        exit 0
    fi
else
    how_to_get_it "no $system_dir and no apt-get"
    exit 0
fi

mkdir -p "$tmp/out" "$dest"
for f in "${files[@]}"; do
    cp "$src/$f" "$tmp/out/$f"
    gzip -t "$tmp/out/$f"
done
for f in "${files[@]}"; do
    mv -f "$tmp/out/$f" "$dest/$f"
done
echo "Fashion-MNIST installed in $dest/"
