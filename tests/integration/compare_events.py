#!/usr/bin/env python3
"""Compare what `tapline run --dump-events` extracted with what `tapline gen` wrote.

usage: compare_events.py TRUTH SUMMARY FIGURES DUMP [DUMP...]

TRUTH    gen --truth file (one JSON line per generated event)
SUMMARY  gen --summary file (expected counters)
FIGURES  stdout of tapline run (lines 'figure <name> <value>')
DUMP     run --dump-events files, one per worker

Checks, and prints one line per difference:
 - every valid generated event was extracted exactly once with identical fields
   (is_error, every column, extra), and nothing else was;
 - every counter in SUMMARY equals the figure of the same name.
Exit 0 if all agree, 1 otherwise.
"""
import collections
import json
import sys


def canon(rec):
    return json.dumps({"is_error": rec["is_error"], "cols": rec["cols"], "extra": rec["extra"]},
                      sort_keys=True, ensure_ascii=False)


def main():
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    truth_path, summary_path, figures_path = sys.argv[1:4]
    dumps = sys.argv[4:]

    want = collections.Counter()
    with open(truth_path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["valid"]:
                want[canon(rec)] += 1

    got = collections.Counter()
    got_rejected = collections.Counter()
    for path in dumps:
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec["valid"]:
                    got[canon(rec)] += 1
                else:
                    got_rejected[rec["reason"]] += 1

    problems = 0
    missing = want - got
    extra = got - want
    for k, n in list(missing.items())[:10]:
        print(f"MISSING x{n}: {k[:400]}")
    for k, n in list(extra.items())[:10]:
        print(f"UNEXPECTED x{n}: {k[:400]}")
    problems += sum(missing.values()) + sum(extra.values())

    figures = {}
    with open(figures_path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "figure":
                figures[parts[1]] = int(float(parts[2]))
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    for name, value in sorted(summary.items()):
        if name not in figures:
            print(f"COUNTER {name}: expected {value}, tapline printed no such figure")
            problems += 1
        elif figures[name] != value:
            print(f"COUNTER {name}: expected {value}, got {figures[name]}")
            problems += 1

    # The dump's rejected lines must agree with the event-level counters.
    for reason, n in got_rejected.items():
        fig = figures.get("rejected_" + reason)
        if fig != n:
            print(f"DUMP rejected {reason}: {n} lines, figure says {fig}")
            problems += 1

    print(f"compared {sum(want.values())} expected valid events with {sum(got.values())} "
          f"extracted; {len(summary)} counters; {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
