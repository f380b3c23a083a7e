#!/usr/bin/env bash
# 7. Footprint: the size of examples/minimal.rs (spawn, wait_ready, print) at the size profile
# (opt-level "z", LTO, one codegen unit, stripped), the same with panic = "abort" (a choice of
# the program, not of this library: no unwinding tables or landing pads), and at the release
# profile (opt-level 3, stripped here for comparison), with the default features and, once the
# crate has a `webpki-roots` feature, without it (`--no-default-features`: the cluster CA
# only); the crates of `cargo tree -e normal`; and with --clean-build the clean release build
# time of the library (a separate target dir; minutes on 2 cores).
#
# Run: bash benches/footprint.sh [--clean-build]
set -euo pipefail
cd "$(dirname "$0")/.."

# Whether the crate declares a `webpki-roots` feature (issue 12): then both builds are measured.
if cargo metadata --no-deps --format-version 1 | grep -q '"webpki-roots":\['; then
    variants=("default" "no-webpki")
else
    variants=("default")
fi

# The stripped sizes of examples/minimal with the given cargo feature flags: "size
# size-with-panic-abort release". Each build overwrites the previous one's binary, so the
# sizes are read right after it.
sizes() {
    local z abort
    cargo build --quiet --profile size --example minimal "$@"
    z=$(stat -c %s target/size/examples/minimal)
    CARGO_PROFILE_SIZE_PANIC=abort cargo build --quiet --profile size --example minimal "$@"
    abort=$(stat -c %s target/size/examples/minimal)
    cargo build --quiet --release --example minimal "$@"
    local stripped
    stripped="$(mktemp)"
    cp target/release/examples/minimal "$stripped"
    strip "$stripped"
    echo "$z $abort $(stat -c %s "$stripped")"
    rm -f "$stripped"
}

declare -A size_z size_abort size_3
for v in "${variants[@]}"; do
    if [[ "$v" == "default" ]]; then
        read -r size_z[$v] size_abort[$v] size_3[$v] < <(sizes)
    else
        read -r size_z[$v] size_abort[$v] size_3[$v] < <(sizes --no-default-features)
    fi
done
# The example is built with the dev-dependencies, and a dev-dependency on this crate that
# does not say `default-features = false` turns the default features back on: check that the
# second build really left webpki-roots out, rather than print its size as if it had.
if [[ -n "${size_z[no-webpki]:-}" ]] &&
    cargo tree -e normal,dev --no-default-features -i webpki-roots >/dev/null 2>&1; then
    echo "webpki-roots is still linked with --no-default-features (a dev-dependency on this crate with its default features?):" >&2
    cargo tree -e normal,dev --no-default-features -i webpki-roots >&2
    exit 1
fi
# Leave the default build in place for whoever runs the example next.
if [[ ${#variants[@]} -gt 1 ]]; then
    sizes >/dev/null
fi

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB (%.2f MiB)", b / 1e6, b / 1048576 }'; }

crates() {
    local all total macros
    all=$(cargo tree -e normal --prefix none "$@" | sed 's/ (\*)$//' | sort -u)
    total=$(printf '%s\n' "$all" | wc -l)
    macros=$(printf '%s\n' "$all" | grep -cE '^(proc-macro2|quote|syn|unicode-ident|serde_derive) ' || true)
    echo "crates in cargo tree -e normal${*:+ $*} (deduplicated): $total, of which $macros build-time proc-macro crates and kuberesolver itself"
    echo "crates linked into the binary besides kuberesolver: $((total - macros - 1)) (kube-rs: about 120)"
    printf '%s\n' "$all" | sed 's/^/  /'
}

echo "footprint of examples/minimal.rs ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc -V); load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-58s %14s  %s\n' "what" "bytes" ""
printf '%-58s %14s  %s\n' "size profile (opt-level z, LTO, 1 CGU, stripped)" "${size_z[default]}" "$(mb "${size_z[default]}"); goal ≤ 2,000,000"
if [[ -n "${size_z[no-webpki]:-}" ]]; then
    printf '%-58s %14s  %s\n' "the same without webpki-roots (--no-default-features)" "${size_z[no-webpki]}" "$(mb "${size_z[no-webpki]}"); goal ≤ 1,800,000"
else
    printf '%-58s %14s  %s\n' "the same without webpki-roots" "-" "no webpki-roots feature yet; goal ≤ 1,800,000"
fi
printf '%-58s %14s  %s\n' "size profile with panic = \"abort\"" "${size_abort[default]}" "$(mb "${size_abort[default]}")"
if [[ -n "${size_abort[no-webpki]:-}" ]]; then
    printf '%-58s %14s  %s\n' "the same without webpki-roots" "${size_abort[no-webpki]}" "$(mb "${size_abort[no-webpki]}")"
fi
printf '%-58s %14s  %s\n' "release profile (opt-level 3), stripped" "${size_3[default]}" "$(mb "${size_3[default]}")"
if [[ -n "${size_3[no-webpki]:-}" ]]; then
    printf '%-58s %14s  %s\n' "the same without webpki-roots" "${size_3[no-webpki]}" "$(mb "${size_3[no-webpki]}")"
fi
printf '%-58s %14s  %s\n' "baseline: kube-rs 5 + tokio, same program, size profile" "" "5.1 MB (issue)"
printf '%-58s %14s  %s\n' "baseline: kube-rs 5 + tokio, opt-level 3" "" "8.3 MB (issue)"
echo
crates
if [[ -n "${size_z[no-webpki]:-}" ]]; then
    echo
    crates --no-default-features
fi

if [[ "${1:-}" == "--clean-build" ]]; then
    dir="$(mktemp -d)"
    start=$(date +%s.%N)
    CARGO_TARGET_DIR="$dir" cargo build --quiet --release --lib
    end=$(date +%s.%N)
    rm -rf "$dir"
    echo
    awk -v s="$start" -v e="$end" 'BEGIN { printf "clean release build of the library: %.1f s\n", e - s }'
fi
