#!/bin/bash
# FEC encoding benchmark: `verity format --fec-device` against `veritysetup format --fec-device`
# on the same 1 GiB file (tmpfs), roots 2 by default. Prints each run's wall and CPU seconds, the
# medians, and the ratio (veritysetup / verity). Also checks that both wrote identical parity.
#
# Usage: benches/fec.sh [SIZE_MIB] [RUNS] [ROOTS]    (build first: cargo build --release)
# Env: BENCH_DIR (default /dev/shm), VERITY (default target/release/verity).
set -euo pipefail

size_mib=${1:-1024}
runs=${2:-3}
roots=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
verity=${VERITY:-$here/target/release/verity}
dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/fecbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
salt=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
uuid=12345678-1234-1234-1234-123456789abc

[ -x "$verity" ] || { echo "build first: cargo build --release ($verity missing)" >&2; exit 2; }
command -v veritysetup >/dev/null || { echo "veritysetup is missing (cryptsetup-bin)" >&2; exit 2; }

head -c $((size_mib * 1048576)) /dev/urandom > "$dir/data.img"

# One timed run: prints "wall user sys".
timed() {
    /usr/bin/time -f "%e %U %S" -o "$dir/t" "$@" > /dev/null
    cat "$dir/t"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A wall cpu
for tool in veritysetup verity; do
    : > "$dir/$tool.wall"; : > "$dir/$tool.cpu"
    for i in $(seq "$runs"); do
        rm -f "$dir/$tool.hash" "$dir/$tool.fec"
        bin=$tool; [ "$tool" = verity ] && bin=$verity
        read -r w u s < <(timed "$bin" format --salt=$salt --uuid=$uuid \
            --fec-device="$dir/$tool.fec" --fec-roots="$roots" "$dir/data.img" "$dir/$tool.hash")
        c=$(echo "$u + $s" | bc -l)
        echo "$tool run $i: wall ${w}s cpu ${c}s"
        echo "$w" >> "$dir/$tool.wall"; echo "$c" >> "$dir/$tool.cpu"
    done
    wall[$tool]=$(median < "$dir/$tool.wall")
    cpu[$tool]=$(median < "$dir/$tool.cpu")
done

cmp "$dir/veritysetup.fec" "$dir/verity.fec" && cmp "$dir/veritysetup.hash" "$dir/verity.hash" \
    && echo "parity and hash files identical"
echo "size ${size_mib} MiB, roots $roots, $(nproc) CPUs, median of $runs"
printf 'veritysetup format --fec-device: wall %ss  cpu %ss\n' "${wall[veritysetup]}" "${cpu[veritysetup]}"
printf 'verity format --fec-device:      wall %ss  cpu %ss\n' "${wall[verity]}" "${cpu[verity]}"
printf 'ratio (veritysetup / verity):    wall %.1fx  cpu %.1fx\n' \
    "$(echo "${wall[veritysetup]} / ${wall[verity]}" | bc -l)" \
    "$(echo "${cpu[veritysetup]} / ${cpu[verity]}" | bc -l)"
