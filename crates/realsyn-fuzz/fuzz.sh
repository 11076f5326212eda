#!/usr/bin/env bash
# Build realsyn-fuzz with LLVM SanitizerCoverage edge counters and run it, coverage-guided.
#
#   crates/realsyn-fuzz/fuzz.sh --target html --execs 1000000
#
# Plain stable rustc takes the same flags cargo-fuzz and cargo-afl pass (no nightly):
# every crate in the binary is instrumented, dependencies included. The build has its
# own target dir (REALSYN_FUZZ_TARGET_DIR) so it never invalidates the normal one, and
# names the host triple so build scripts and proc-macros stay uninstrumented.
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir=${REALSYN_FUZZ_TARGET_DIR:-$HOME/.cache/realsyn-fuzz-target}
triple=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters" \
    cargo build --release --quiet -p realsyn-fuzz --target "$triple" --target-dir "$target_dir"
exec "$target_dir/$triple/release/realsyn-fuzz" "$@"
