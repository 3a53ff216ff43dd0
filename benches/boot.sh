#!/usr/bin/env bash
# benches/boot.sh: issue 15 point 4 on the host's userspace path. Ten signed sysext DDIs of 16 MiB
# (incompressible contents) are verified, measured into a real swtpm and merged by `verity boot`
# inside a private mount namespace; the wall time of each run (median of RUNS, a fresh swtpm and
# an unmerged root each time) and the per-step durations from the hook's own JSON report are
# printed as one JSON object. For comparison, systemd-sysext 257 (tests/oracle/systemd-257)
# merges the same ten trees as directory extensions (no verity, no signature, no measurement).
# Needs root, swtpm, util-linux, jq; Usage: benches/boot.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$(pwd)
RUNS=${1:-5}
V=${VERITY:-$HERE/target/release/verity}
[ -x "$V" ] || cargo build --release --quiet
W=$(mktemp -d /dev/shm/verity-boot-bench.XXXXXX)
SWTPM_PID=
cleanup() {
    [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null && wait "$SWTPM_PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
R=$W/root
mkdir -p "$R/etc" "$R/usr/share" "$R/var/lib/extensions" "$W/trust" "$W/dirs/var/lib/extensions"
echo "ID=debian" > "$R/etc/os-release"
cp keys/leaf.crt "$W/trust/"
benches/sysexts.sh "$V" "$W/src" "$R/var/lib/extensions"
cp -a "$W"/src/ext* "$W/dirs/var/lib/extensions/"
cp -a "$R/etc" "$R/usr" "$W/dirs/"

port=$((20000 + RANDOM % 20000))
cat > "$W/boot.toml" <<TOML
root = "$R"
trust = ["$W/trust"]
tpm = "swtpm:host=127.0.0.1,port=$port"
dangerous-tpm-simulator = true
event-log = "$W/log"
integrity = "userspace"
TOML

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now() { date +%s.%N; }

: > "$W/verity.times"
for run in $(seq 1 "$RUNS"); do
    rm -rf "$W/tpmstate" "$W/log" && mkdir -p "$W/tpmstate"
    swtpm socket --tpm2 --tpmstate "dir=$W/tpmstate" \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --flags not-need-init,startup-clear &
    SWTPM_PID=$!
    sleep 0.3
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    unshare -m --propagation private sh -euc '
        t0=$(date +%s.%N)
        "$0" boot --config "$1" --report "$2" > /dev/null 2>&1
        t1=$(date +%s.%N)
        test -e "$3/usr/share/ext10/payload"
        echo "$t1 - $t0" | bc
    ' "$V" "$W/boot.toml" "$W/report.$run.json" "$R" >> "$W/verity.times"
    kill "$SWTPM_PID"; wait "$SWTPM_PID" 2>/dev/null || true; SWTPM_PID=
done

SX=$(tests/oracle/systemd-257 path systemd-sysext 2>/dev/null || true)
: > "$W/systemd.times"
if [ -n "$SX" ]; then
    for run in $(seq 1 "$RUNS"); do
        # systemd-sysext merges in a child namespace (shared propagation brings the mount back) and
        # makes /run a slave mount first: give it a tmpfs there.
        unshare -m --propagation private sh -euc '
            mount --make-rshared / && mount -t tmpfs tmpfs /run
            t0=$(date +%s.%N)
            SYSTEMD_LOG_LEVEL=err "$0" merge --root="$1" --image-policy="root=unprotected+absent:usr=unprotected+absent" --no-reload > /dev/null 2>&1
            t1=$(date +%s.%N)
            test -e "$1/usr/share/ext10/payload"
            echo "$t1 - $t0" | bc
        ' "$SX" "$W/dirs" >> "$W/systemd.times"
    done
fi

# Per-step medians over the runs' reports: each step summed over the ten images.
S=$(jq -s -f benches/steps.jq "$W"/report.*.json)
steps=$(jq -c .steps_ms_sum_of_10 <<< "$S") overlay=$(jq .overlay_ms <<< "$S") accepted=$(jq .accepted <<< "$S")
jq -cn --arg v "$(median < "$W/verity.times")" --arg s "$(median < "$W/systemd.times" 2>/dev/null)" \
    --argjson steps "$steps" --argjson overlay "$overlay" --argjson accepted "$accepted" --argjson runs "$RUNS" \
    '{work: "boot hook: 10 signed 16 MiB sysext DDIs, userspace integrity, swtpm", runs: $runs,
      accepted: $accepted, verity_s: ($v|tonumber), systemd_sysext_dirs_s: ($s|tonumber? // null),
      steps_ms_sum_of_10: $steps, overlay_ms: $overlay}'
