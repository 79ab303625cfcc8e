#!/bin/bash
# Run a libFuzzer target for a bounded time from the checked-in seeds without writing
# into the source tree: new inputs go to a scratch folder that is removed afterwards.
# A crash is kept in the build folder (artifact_prefix) and fails the test.
# usage: run_fuzz.sh FUZZER SECONDS SEED_DIR ARTIFACT_DIR
set -uo pipefail
fuzzer=$1
secs=$2
seeds=$3
artifacts=$4
scratch=$(mktemp -d /tmp/tapline-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$artifacts"
# libFuzzer's default error exit code is 77, which meson would read as "skipped".
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$artifacts/" \
	"$scratch" "$seeds"
