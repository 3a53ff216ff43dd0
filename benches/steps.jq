# benches/steps.jq: where `verity boot` spent its time, over several runs' JSON reports (slurped,
# `jq -s -f benches/steps.jq REPORT...`), shared by benches/boot.sh and benches/boot-vm.sh. Per run,
# each step's microseconds are summed over the images; then each figure is the median over the
# runs, in ms. Steps keep the pipeline's order (open, dissect, ... measure).
def median: sort | .[length / 2 | floor];
(.[0].images[0].steps | map(.step)) as $order
| {accepted: ([.[0].images[] | select(.status == "accepted")] | length),
   report_ms: ([.[].micros] | median / 1000),
   steps_ms_sum_of_10: ([.[] | [.images[].steps[]] | group_by(.step)
                         | map({key: .[0].step, value: (map(.micros) | add)}) | from_entries] as $runs
                        | [$order[] as $s | {key: $s, value: ([$runs[][$s]] | median / 1000)}] | from_entries),
   overlay_ms: ([.[].timing[0].overlayMicros] | median / 1000)}
