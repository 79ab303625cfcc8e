#!/bin/bash
# Configure and build tapline.
#   scripts/build.sh            release build (gcc) in build/
#   scripts/build.sh asan       ASan/UBSan build (clang) with libFuzzer targets in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in
release)
	dir=build
	[ -f $dir/build.ninja ] || CC=gcc meson setup $dir -Dbuildtype=debugoptimized >/dev/null
	;;
asan)
	dir=build-asan
	[ -f $dir/build.ninja ] || CC=clang meson setup $dir -Dbuildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true >/dev/null
	;;
*)
	echo "usage: $0 [release|asan]" >&2
	exit 2
	;;
esac
ninja -C $dir >/dev/null
echo "build: $dir/app/tapline"
