#!/usr/bin/env bash
# LeNet-5's training speed in two checkouts of xpconv, side by side: BEFORE and AFTER alternate,
# ROUNDS times (default 3), each run `python -m xpconv train --model lenet5 --data DATA --epochs 1
# --lr 0.01 --seed 0` in a fresh process with that checkout first on the path, in the current
# Python environment.  Prints each run's last line and the per-round ratio AFTER/BEFORE.
#
#     git worktree add ../before <commit>
#     bash benchmarks/train_ab.sh ../before . ../shared/data/mnist-t10k
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash benchmarks/train_ab.sh BEFORE AFTER DATA [ROUNDS]" >&2
    exit 2
fi
before="$(cd "$1" && pwd)" after="$(cd "$2" && pwd)" data="$(cd "$3" && pwd)" rounds="${4:-3}"
run() {  # a checkout -> its run's last line
    (cd "$1" && PYTHONPATH="$1" python -m xpconv train --model lenet5 --data "$data" --epochs 1 --lr 0.01 \
        --seed 0 --quiet 2>&1 | tail -n 1)
}
rate() { echo "$1" | grep -oE '[0-9,]+ images/s' | tr -d ',' | cut -d' ' -f1; }  # a run's line -> its images/s
for round in $(seq "$rounds"); do
    old="$(run "$before")"
    new="$(run "$after")"
    echo "round $round before: $old"
    echo "round $round after:  $new"
    python -c "print(f'round $round: after/before {$(rate "$new")/$(rate "$old"):.2f}x')"
done
