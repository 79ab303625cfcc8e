#!/usr/bin/env python3
"""Sum meson test logs (testlog.json, one JSON object per test) into one closing line:
'N passed, N failed[, N skipped]'. A log that is missing or empty counts as a failure,
so a run that executed no test cannot pass."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    n = 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                n += 1
                result = json.loads(line)["result"]
                if result in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif result == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    except OSError as e:
        print(f"test summary: {path}: {e}", file=sys.stderr)
    if n == 0:
        print(f"test summary: {path}: no test ran", file=sys.stderr)
        failed += 1
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
