#!/usr/bin/env bash
# 7. Footprint: the size of examples/minimal.rs (spawn, wait_ready, print) at the size profile
# (opt-level "z", LTO, one codegen unit, stripped) and at the release profile (opt-level 3,
# stripped here for comparison), the crates of `cargo tree -e normal`, and with --clean-build
# the clean release build time of the library (a separate target dir; minutes on 2 cores).
#
# Run: bash benches/footprint.sh [--clean-build]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --profile size --example minimal
cargo build --quiet --release --example minimal
stripped="$(mktemp)"
cp target/release/examples/minimal "$stripped"
strip "$stripped"

size_z=$(stat -c %s target/size/examples/minimal)
size_3=$(stat -c %s "$stripped")
rm -f "$stripped"
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB (%.2f MiB)", b / 1e6, b / 1048576 }'; }

all=$(cargo tree -e normal --prefix none | sed 's/ (\*)$//' | sort -u)
total=$(printf '%s\n' "$all" | wc -l)
macros=$(printf '%s\n' "$all" | grep -cE '^(proc-macro2|quote|syn|unicode-ident|serde_derive) ' || true)

echo "footprint of examples/minimal.rs ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc -V))"
printf '%-52s %14s  %s\n' "what" "bytes" ""
printf '%-52s %14s  %s\n' "size profile (opt-level z, LTO, 1 CGU, stripped)" "$size_z" "$(mb "$size_z")"
printf '%-52s %14s  %s\n' "release profile (opt-level 3), stripped" "$size_3" "$(mb "$size_3")"
printf '%-52s %14s  %s\n' "baseline: kube-rs 5 + tokio, same program, size profile" "" "5.1 MB (issue)"
printf '%-52s %14s  %s\n' "baseline: kube-rs 5 + tokio, opt-level 3" "" "8.3 MB (issue)"
echo
echo "crates in cargo tree -e normal (deduplicated): $total, of which $macros build-time proc-macro crates and kuberesolver itself"
echo "crates linked into the binary besides kuberesolver: $((total - macros - 1)) (kube-rs: about 120)"
printf '%s\n' "$all" | sed 's/^/  /'

if [[ "${1:-}" == "--clean-build" ]]; then
    dir="$(mktemp -d)"
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$dir" cargo build --quiet --release --lib
    end=$(date +%s.%N)
    rm -rf "$dir"
    echo
    awk -v s="$start" -v e="$end" 'BEGIN { printf "clean release build of the library: %.1f s\n", e - s }'
fi
