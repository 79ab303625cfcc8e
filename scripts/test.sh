#!/bin/bash
# The whole test suite: install what is missing, build twice (gcc release and clang
# ASan/UBSan with libFuzzer), run every test in both, print meson's summaries and then
# one line 'N passed, N failed[, N skipped]' over both runs. Exit 0 only if nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release || exit 1
scripts/build.sh asan || exit 1

rc=0
# Release build: everything. ASan build: unit tests, fuzzers, and the integration tests
# (LeakSanitizer is off there: the DPDK EAL keeps memory until exit by design).
meson test -C build --print-errorlogs --num-processes 2 || rc=1
ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan --print-errorlogs --num-processes 2 \
	--suite unit --suite fuzz || rc=1
# An instrumented worker is slower: the live-capture test sends at a rate it sustains.
ASAN_OPTIONS=detect_leaks=0 TAPLINE_TEST_RATE=3000 TAPLINE_TEST_EVENTS=9000 \
	meson test -C build-asan --print-errorlogs --num-processes 1 \
	--suite integration --logbase integration || rc=1

python3 scripts/test_summary.py build/meson-logs/testlog.json \
	build-asan/meson-logs/testlog.json build-asan/meson-logs/integration.json || rc=1
exit $rc
