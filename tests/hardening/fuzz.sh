#!/usr/bin/env bash
# Run every cargo-fuzz target for RUNS executions each (default 10 million),
# one after another on one core (-jobs=1 semantics: a single process), and print
# the figures. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable
# toolchain RUSTC_BOOTSTRAP=1 lets it use the -Z flags it needs.
#
#   tests/hardening/fuzz.sh [RUNS] [TARGET...]
#
# Builds with -O (release), -a (debug assertions: overflow checks) and no
# sanitizer: the fuzzed code is safe Rust, where AddressSanitizer finds nothing
# and halves the speed (pass FUZZ_SANITIZER=address to use it anyway).
# Findings go to fuzz/artifacts/ (gitignored); copy a real reproducer to
# fuzz/artifacts-regressions/TARGET/ so `cargo test` replays it. The run grows
# its corpus in fuzz/work/TARGET/ (gitignored), starting from the committed seed
# corpus fuzz/corpus/TARGET/ (and fuzz/seeds/TARGET/), which it does not modify.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
RUNS=${1:-10000000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(entry_bytes entry_structured zone settings)
SAN=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a -s "$SAN" 2>&1 | grep -E "^(error|warning: unused)" -A5 || true
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p artifacts
failed=0
for t in "${TARGETS[@]}"; do
  args=(-runs="$RUNS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "-artifact_prefix=artifacts/$t-")
  case $t in entry_bytes | zone) args+=(-dict=dicts/registry.dict) ;; esac
  dirs=("work/$t" "corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  mkdir -p "work/$t"
  log=$(mktemp)
  start=$(date +%s)
  if "$bin/$t" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then status=ok; else status=CRASH; failed=$((failed + 1)); fi
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-17s %s execs in %ss (%s/s), corpus %s files: %s\n' "$t" "${execs:-?}" "$secs" "${rate:-?}" \
    "$(find "work/$t" -type f | wc -l)" "$status"
  if [ $status != ok ]; then grep -E 'panicked|Test unit written' -A2 "$log" | head -20; fi
  rm -f "$log"
done
echo "$(( ${#TARGETS[@]} - failed )) passed, $failed failed"
[ $failed -eq 0 ]
