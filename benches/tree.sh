#!/usr/bin/env bash
# Benchmark: `verity` against `veritysetup` in the same run, alternating, on the same files.
#   - format and verify of a 1 GiB file of random data
#   - format and verify of a 4 GiB sparse file holding 256 MiB of data
# Prints the median wall time of each, the throughput, the ratio, peak RSS of verity, and the
# `openssl speed -multi <cores> -evp sha256` ceiling on 4 KiB blocks for comparison.
# Usage: benches/tree.sh [RUNS] (default 5). Needs a release build (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
DIR=${BENCH_DIR:-/dev/shm/verity-bench}
V=${VERITY_BIN:-target/release/verity}
[ -x "$V" ] || cargo build --release --no-default-features --quiet
VS=$(command -v veritysetup || echo /usr/sbin/veritysetup)
SALT=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

if [ ! -f "$DIR/dense.img" ]; then
  head -c 1G /dev/urandom > "$DIR/dense.img"
fi
if [ ! -f "$DIR/sparse.img" ]; then
  truncate -s 4G "$DIR/sparse.img"
  # 256 MiB of data in 16 stripes of 16 MiB spread over the 4 GiB.
  for i in $(seq 0 15); do
    head -c 16M /dev/urandom | dd of="$DIR/sparse.img" bs=1M seek=$((i * 256)) conv=notrunc status=none
  done
fi

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

bench() { # name file
  local name=$1 img=$2 size
  size=$(stat -c %s "$img")
  local vf=() sf=() vv=() sv=() root
  for _ in $(seq "$RUNS"); do
    rm -f "$DIR/v.hash" "$DIR/s.hash"
    t=$(now); "$V" format --salt=$SALT "$img" "$DIR/v.hash" > "$DIR/v.out"; vf+=("$(echo "$(now) - $t" | bc)")
    t=$(now); "$VS" format --salt=$SALT "$img" "$DIR/s.hash" > "$DIR/s.out"; sf+=("$(echo "$(now) - $t" | bc)")
    root=$(awk -F'\t' '/^Root hash:/ {print $2}' "$DIR/v.out")
    [ "$root" = "$(awk -F'\t' '/^Root hash:/ {print $2}' "$DIR/s.out")" ] || { echo "root mismatch on $name" >&2; exit 1; }
    t=$(now); "$V" verify "$img" "$DIR/v.hash" "$root"; vv+=("$(echo "$(now) - $t" | bc)")
    t=$(now); "$VS" verify "$img" "$DIR/s.hash" "$root"; sv+=("$(echo "$(now) - $t" | bc)")
  done
  rss=$( { /usr/bin/time -f %M "$V" verify "$img" "$DIR/v.hash" "$root" ; } 2>&1 | tail -1)
  for op in format verify; do
    if [ $op = format ]; then a=("${vf[@]}"); b=("${sf[@]}"); else a=("${vv[@]}"); b=("${sv[@]}"); fi
    mv=$(printf '%s\n' "${a[@]}" | median); ms=$(printf '%s\n' "${b[@]}" | median)
    printf '%-7s %-6s verity %6.3f s (%5.2f GiB/s)  veritysetup %6.3f s (%5.2f GiB/s)  ratio %5.2fx\n' \
      "$name" "$op" "$mv" "$(echo "$size / 1073741824 / $mv" | bc -l)" "$ms" "$(echo "$size / 1073741824 / $ms" | bc -l)" \
      "$(echo "$ms / $mv" | bc -l)"
  done
  echo "$name   verity verify peak RSS: $((rss / 1024)) MiB"
  # CPU seconds (user + sys) of one run each: unlike wall time, stable on a loaded machine.
  for tool in "$V" "$VS"; do
    rm -f "$DIR/c.hash"
    f=$( { /usr/bin/time -f '%U %S' "$tool" format --salt=$SALT "$img" "$DIR/c.hash" > /dev/null; } 2>&1 | tail -1)
    v=$( { /usr/bin/time -f '%U %S' "$tool" verify "$img" "$DIR/c.hash" "$root"; } 2>&1 | tail -1)
    printf '%-7s CPU s (user sys) %-12s format %s  verify %s\n' "$name" "$(basename "$tool")" "$f" "$v"
  done
}

echo "verity bench: $RUNS runs each, $(nproc) cores, files in $DIR"
bench dense "$DIR/dense.img"
bench sparse "$DIR/sparse.img"
ceiling=$(openssl speed -seconds 3 -multi "$(nproc)" -bytes 4096 -evp sha256 2>/dev/null | awk '/^sha256/ {print $NF}' | tr -d k)
if [ -n "$ceiling" ]; then
  printf 'openssl speed -multi %s -evp sha256 (4 KiB): %.2f GiB/s\n' "$(nproc)" "$(echo "$ceiling * 1000 / 1073741824" | bc -l)"
fi
