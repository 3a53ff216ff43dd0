#!/usr/bin/env bash
# benches/boot-vm.sh: issue 15 point 4 on the kernel dm-verity path. tests/vm/run (VERITY_VM_BENCH)
# boots the VM test's Debian kernel under QEMU with swtpm as the VM's TPM and ten signed 16 MiB
# sysexts (benches/sysexts.sh, as benches/boot.sh); inside the guest `verity boot --json` verifies,
# activates them as kernel dm-verity devices, measures them into the VM's TPM and merges them, RUNS
# times (unmerged and every dm device removed between runs). The times are taken in the guest
# (its clock around the call, and the report's own durations), so the VM's boot and the console
# are not in them; the guest's CPU is still emulated (TCG), which the md5sum probe quantifies:
# the same busybox md5sum over 16 MiB in the guest and on the host. Before the first run the guest
# waits for its kernel RNG (tests/vm/bench-init says why); that wait is reported, not timed in.
# Prints one JSON object.
# Exit 2 with the reason on stderr when the VM cannot run. Needs root (tests/vm/run), jq.
# Usage: benches/boot-vm.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
V=${VERITY:-$(pwd)/target/release/verity}
[ -x "$V" ] || cargo build --release --quiet
O=$(mktemp -d /tmp/verity-boot-vm.XXXXXX)
trap 'rm -rf "$O"' EXIT
if ! VERITY_BIN=$V VERITY_VM_BENCH=$RUNS tests/vm/run > "$O/out" 2> "$O/err"; then
    tail -20 "$O/err" >&2
    echo "benches/boot-vm.sh: $(grep -a '^VM-BENCH' "$O/out" || echo "tests/vm/run failed")" >&2
    exit 2
fi
grep -a '^BENCH-REPORT ' "$O/out" | cut -d' ' -f3- > "$O/reports"
[ "$(wc -l < "$O/reports")" = "$RUNS" ] || { echo "benches/boot-vm.sh: expected $RUNS reports" >&2; exit 2; }
S=$(jq -s -f benches/steps.jq "$O/reports")
# Guest wall time per run, from the two $EPOCHREALTIME stamps (seconds.microseconds).
walls=$(awk '/^BENCH-RUN /{printf "%.3f\n", $5 - $4}' "$O/out" | jq -s -c .)
firsts=$(jq -s -c '.[0] | {report_s: (.micros / 1000 | round / 1000), measure_ms: ([.images[].steps[] | select(.step == "measure") | .micros] | add / 1000 | round)}' "$O/reports")
read -r _ _ bytes c0 c1 < <(grep -a '^BENCH-CALIB ' "$O/out")
# The host side of the probe: the guest's busybox (tests/vm/run's cache) on as many random bytes.
B=${VERITY_VM_CACHE:-/var/cache/verity-vm}/busybox
head -c "$bytes" /dev/urandom > "$O/calib"
host=$(for _ in 1 2 3; do t0=$EPOCHREALTIME; "$B" md5sum "$O/calib" > /dev/null; t1=$EPOCHREALTIME
    echo "$t1 - $t0" | bc; done | sort -g | head -1)
guest=$(echo "$c1 - $c0" | bc)
read -r _ r0 r1 < <(grep -a '^BENCH-RNG ' "$O/out")
jq -cn --argjson s "$S" --argjson walls "$walls" --argjson first "$firsts" --argjson runs "$RUNS" \
    --arg verdict "$(grep -a '^VM-BENCH' "$O/out")" --arg env "$(grep -a '^BENCH-ENV ' "$O/out" | cut -d' ' -f2-)" \
    --arg host "$host" --arg guest "$guest" --arg rng "$(echo "$r1 - $r0" | bc)" \
    '{work: "boot hook in the VM guest, kernel dm-verity, 10 x 16 MiB signed sysexts", runs: $runs,
      integrity: "kernel", accepted: $s.accepted,
      guest_wall_s: ($walls | sort | .[length / 2 | floor]), guest_wall_runs_s: $walls,
      report_s: ($s.report_ms | round / 1000), first_run: $first,
      steps_ms_sum_of_10: $s.steps_ms_sum_of_10, overlay_ms: $s.overlay_ms,
      cpu_slowdown_md5sum: (($guest | tonumber) / ($host | tonumber) * 10 | round / 10),
      guest_rng_wait_s: ($rng | tonumber * 1000 | round / 1000), guest: $env, vm: ($verdict | sub("^VM-BENCH: PASS "; ""))}'
