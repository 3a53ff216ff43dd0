#!/usr/bin/env bash
# benches/sysexts.sh: the boot-hook benchmark's images, shared by benches/boot.sh (host userspace
# path) and benches/boot-vm.sh (the VM guest's kernel dm-verity path) so both time the same shape.
# Ten sysext DDIs ext1..ext10 of 16 MiB each (one incompressible payload file), signed with the
# TEST-ONLY keys/leaf.key; the source trees are kept for the directory-extension comparison.
# Usage: benches/sysexts.sh VERITY_BIN SRC_DIR OUT_DIR   (writes SRC_DIR/extN/, OUT_DIR/extN.raw)
set -euo pipefail
V=$1 SRC=$2 OUT=$3
KEYS=$(cd "$(dirname "$0")/../keys" && pwd)
mkdir -p "$OUT"
for i in $(seq 1 10); do
    s=$SRC/ext$i
    mkdir -p "$s/usr/lib/extension-release.d" "$s/usr/share/ext$i"
    echo "ID=_any" > "$s/usr/lib/extension-release.d/extension-release.ext$i"
    # 16 MiB less the room the file system, tree and signature take.
    head -c $((16 * 1024 * 1024 - 64 * 1024)) /dev/urandom > "$s/usr/share/ext$i/payload"
    "$V" image build --class sysext --key "$KEYS/leaf.key" --cert "$KEYS/leaf.crt" \
        -o "$OUT/ext$i.raw" "$s" > /dev/null
done
