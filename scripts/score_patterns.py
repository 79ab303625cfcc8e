#!/usr/bin/env python3
r"""Precision and recall of tapline's shipped classification profiles on real logs.

Datasets (loghub 2k samples under <data>/loghub/, see <data>/README.md):
    spark        -> Spark_2k   (all INFO lines: measures false positives only)
    hadoop-hdfs  -> Hadoop_2k, HDFS_2k
    e6data-qpe   -> none (no QPE log corpus exists; its patterns are loaded, linted and
                    compiled, not scored)
Supplementary (printed, not pooled into the figures; --no-supplementary skips it):
    spark        -> the failure messages of <data>/spark-eventlog/complex_dec_eventlog
                    (first line and "Caused by:" lines, distinct), all error lines by
                    construction, since Spark_2k has no error line to measure recall on.

Ground truth, from each row of <Dataset>.log_structured.csv (columns Level, Content):
    a line is an ERROR LINE when
      1. its Level is ERROR or FATAL (also SEVERE/CRITICAL, for other log formats), or
      2. its Level is WARN/WARNING and its Content contains EXCEPTION TEXT: a match of
         EXCEPTION_TEXT below (case-insensitive) - an exception/error class name or the
         bare word ("NoRouteToHostException", "OutOfMemoryError", "DataStreamer
         Exception", "status: ERROR"), or one of the failure words fail/fails/failed/
         failure(s), refused, denied, timed out, timeout, unreachable, corrupt(ed),
         killed, lost, abort(ed/ing);
    every other line (INFO/DEBUG/TRACE, WARN without exception text) is not.
    The classifier never sees the level: it scans the Content text only, so an INFO line
    that quotes an exception (MapReduce "Diagnostics report ... Error: ...") can count as
    a false positive, and a WARN line without exception text that a pattern flags as an
    error counts as one too.

Prediction: the Content column is written to a file, one line per row, and run through
    tapline patterns test PROFILE FILE --lines
which prints one line per input line: <lineno>\t<ids comma-joined or ->\t<error|tag|->.
A line is predicted an error line when the third column is "error" (a pattern with
effect: error matched); "tag" and "-" are predicted non-errors.

Engines (--engine):
    tapline    the real command (default; needs the build)
    python     the profile's regexes evaluated with Python's `re` (flags translated:
               caseless -> re.I, dotall -> re.S, multiline -> re.M, ucp -> Unicode classes,
               utf8 -> the line is matched as decoded text, singlematch -> no effect on
               "does it match"; allowempty is rejected like tapline rejects it). Patterns
               are matched over the line's bytes, like Hyperscan without utf8/ucp. A lint
               rejects PCRE constructs Hyperscan does not support (lookaround,
               backreferences, atomic groups, possessive quantifiers, \Q..\E, \C, \R, \X,
               \K, conditionals, callouts, recursion).
               --python-engine is the same as --engine python.
    hyperscan  the regexes compiled into one block-mode database with the system's
               libhs.so (ctypes) and scanned line by line - tapline's matching semantics
               without the tapline command.
Only patterns whose fields include `error` or `raw` can match, like the command, which
builds each event with only the `error` column set (and raw = the line).

--cross-check additionally runs the python engine and lists every line where it
disagrees with the chosen engine (ids or verdict); exit status 1 if any.

Output per profile and dataset: TP/FP/FN/TN, precision, recall, the misses (false
positives and false negatives with line id, level, matched ids and content); then per
profile, pooled over its datasets:
    figure precision_<profile> <v>
    figure recall_<profile> <v>
(profile name with '-' replaced by '_'). Precision with nothing predicted (TP+FP == 0)
is undefined: printed as 1.0 with a note. Recall with no error lines (TP+FN == 0) is
undefined: printed as n/a.

Profiles are found in --profiles (default config/profiles) by name; `extends:` is
resolved like tapline does (next to the file, then --profiles). While the e6data QPE
`classify:` section is kept in e6data-qpe.classify.yaml, that fragment is merged into a
profile file of the same stem that has no `classify:` key.

Examples:
    scripts/score_patterns.py                          # tapline engine, all profiles
    scripts/score_patterns.py --python-engine          # without the tapline build
    scripts/score_patterns.py --engine hyperscan --cross-check --hits hadoop-hdfs
    scripts/score_patterns.py --min-precision 0.95 --min-recall 0.95   # as a gate

Exit status: 0 scored (thresholds, if given, met), 1 a threshold missed or cross-check
disagreement, 2 usage/configuration error or an engine failure.
"""
import argparse
import csv
import ctypes
import ctypes.util
import os
import re
import signal
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, reported clearly
    yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Profile -> datasets (file stem under <data>/loghub/).
DATASETS = {
    "spark": ["Spark_2k"],
    "hadoop-hdfs": ["Hadoop_2k", "HDFS_2k"],
    "e6data-qpe": [],
}
DEFAULT_PROFILES = ["spark", "hadoop-hdfs", "e6data-qpe"]
# Extra positives scored and printed, but not pooled into the figures (see
# read_eventlog_failures): Spark_2k has no error line, so this is the only place the
# Spark profile's recall is exercised on real text.
SUPPLEMENTARY = {"spark"}

# ---- ground truth --------------------------------------------------------------------
ERROR_LEVELS = {"ERROR", "FATAL", "SEVERE", "CRITICAL"}
WARN_LEVELS = {"WARN", "WARNING"}
EXCEPTION_TEXT = re.compile(
    r"[A-Za-z0-9_$]*(?:exception|error|throwable)\b"
    r"|\b(?:fail|fails|failed|failure|failures|refused|denied|timed out|timeout"
    r"|unreachable|corrupt|corrupted|killed|lost|abort|aborted|aborting)\b",
    re.IGNORECASE,
)


def is_error_line(level, content):
    level = level.strip().upper()
    if level in ERROR_LEVELS:
        return True
    return level in WARN_LEVELS and EXCEPTION_TEXT.search(content) is not None


# ---- profiles -------------------------------------------------------------------------
VALID_FLAGS = {"caseless", "dotall", "multiline", "utf8", "ucp", "singlematch", "allowempty"}
VALID_SEVERITIES = {"info", "warning", "error", "critical"}
VALID_EFFECTS = {"error", "tag"}
ID_RE = re.compile(r"^[a-z0-9_.-]{1,63}$")
SCANNED_FIELDS = {"error", "raw"}  # what `patterns test` sets on each event


class ProfileError(Exception):
    pass


def merge(parent, child):
    """Child over parent: maps merge key by key, everything else (lists) is replaced."""
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for k, v in child.items():
            out[k] = merge(parent[k], v) if k in parent else v
        return out
    return child


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ProfileError(f"{path}: {e.strerror}")
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: {e}")
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}: top level is not a map")
    return doc


def find_profile(name, profiles_dir):
    for cand in (name, name + ".yaml", os.path.join(profiles_dir, name),
                 os.path.join(profiles_dir, name + ".yaml")):
        if os.path.isfile(cand):
            return cand
    raise ProfileError(f"profile '{name}' not found in {profiles_dir}")


def load_profile(path, profiles_dir, seen=()):
    """The effective profile after `extends:` (resolved next to the file, then in
    profiles_dir). While the e6data QPE classify section is still a separate fragment,
    <name>.classify.yaml next to a profile without `classify:` is merged in."""
    path = os.path.abspath(path)
    if path in seen:
        raise ProfileError("extends: cycle: " + " -> ".join(seen + (path,)))
    doc = load_yaml(path)
    frag = os.path.splitext(path)[0] + ".classify.yaml"
    if "classify" not in doc and os.path.isfile(frag):
        doc["classify"] = load_yaml(frag).get("classify")
    ext = doc.pop("extends", None)
    if ext is None:
        return doc
    if not isinstance(ext, str):
        raise ProfileError(f"{path}: extends: expected one profile name")
    here = os.path.dirname(path)
    try:
        parent_path = find_profile(os.path.join(here, ext), here)
    except ProfileError:
        parent_path = find_profile(ext, profiles_dir)
    return merge(load_profile(parent_path, profiles_dir, seen + (path,)), doc)


# PCRE constructs Hyperscan rejects (checked on the regex text, escapes skipped).
UNSUPPORTED = [
    (re.compile(r"\(\?<?[=!]"), "lookaround"),
    (re.compile(r"\(\?>"), "atomic group"),
    (re.compile(r"\(\?\("), "conditional"),
    (re.compile(r"\(\?C"), "callout"),
    (re.compile(r"\(\?(?:R|\d|&|P>)"), "recursion"),
    (re.compile(r"\\(?:[1-9]|g|k<|k'|k\{)"), "backreference"),
    (re.compile(r"\\[QECRXK]"), "unsupported escape"),
    (re.compile(r"(?:[*+?}])\+"), "possessive quantifier"),
]


def lint_regex(rx):
    """Names of the Hyperscan-unsupported constructs in @rx (a match preceded by an odd
    number of backslashes is escaped, so "\\(?=" is a literal and not a lookahead)."""
    problems = set()
    for pat, what in UNSUPPORTED:
        for m in pat.finditer(rx):
            i, bs = m.start() - 1, 0
            while i >= 0 and rx[i] == "\\":
                bs += 1
                i -= 1
            if bs % 2 == 0:
                problems.add(what)
    return sorted(problems)


def patterns_of(profile, label):
    cls = profile.get("classify")
    if not isinstance(cls, dict) or not isinstance(cls.get("patterns"), list):
        raise ProfileError(f"{label}: no classify.patterns")
    default_fields = cls.get("fields") or ["error"]
    columns = {c.get("name") for c in (profile.get("schema") or {}).get("columns") or []}
    out, ids, problems = [], set(), []
    for i, p in enumerate(cls["patterns"]):
        pid = p.get("id") if isinstance(p, dict) else None
        where = f"{label}: pattern '{pid}'" if pid else f"{label}: pattern #{i + 1}"
        if not isinstance(p, dict):
            problems.append(f"{where}: not a map")
            continue
        for key in ("id", "regex", "category", "severity", "effect", "cause", "action"):
            if not isinstance(p.get(key), str) or not p.get(key).strip():
                problems.append(f"{where}: missing or empty '{key}'")
        if not isinstance(pid, str):
            continue
        if not ID_RE.match(pid):
            problems.append(f"{where}: id must match [a-z0-9_.-]{{1,63}}")
        if pid in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(pid)
        flags = p.get("flags") or []
        fields = p.get("fields") or default_fields
        for f in flags:
            if f not in VALID_FLAGS:
                problems.append(f"{where}: unknown flag '{f}'")
            elif f == "allowempty":
                problems.append(f"{where}: flag 'allowempty' is rejected")
        for f in fields:
            if f != "raw" and f not in columns:
                problems.append(f"{where}: unknown field '{f}'")
        if p.get("severity") not in VALID_SEVERITIES:
            problems.append(f"{where}: severity must be one of {sorted(VALID_SEVERITIES)}")
        if p.get("effect") not in VALID_EFFECTS:
            problems.append(f"{where}: effect must be error or tag")
        rx = p.get("regex")
        if isinstance(rx, str):
            for what in lint_regex(rx):
                problems.append(f"{where}: {what} is not supported by Hyperscan")
        out.append({"id": pid, "regex": rx, "flags": list(flags), "fields": list(fields),
                    "effect": p.get("effect"), "severity": p.get("severity"),
                    "category": p.get("category")})
    if len(out) > 512:
        problems.append(f"{label}: {len(out)} patterns, more than 512")
    if problems:
        raise ProfileError("\n".join(problems))
    return out


# ---- engines --------------------------------------------------------------------------
def verdict(pats, idxs):
    if not idxs:
        return "-"
    return "error" if any(pats[i]["effect"] == "error" for i in idxs) else "tag"


class PythonEngine:
    name = "python"

    def __init__(self, pats):
        self.pats = pats
        self.compiled = []
        for p in pats:
            fl = 0
            if "caseless" in p["flags"]:
                fl |= re.IGNORECASE
            if "dotall" in p["flags"]:
                fl |= re.DOTALL
            if "multiline" in p["flags"]:
                fl |= re.MULTILINE
            text = "utf8" in p["flags"] or "ucp" in p["flags"]
            try:
                if text:
                    if "ucp" not in p["flags"]:
                        fl |= re.ASCII
                    c = re.compile(p["regex"], fl)
                else:
                    c = re.compile(p["regex"].encode("utf-8"), fl)
            except re.error as e:
                raise ProfileError(f"pattern '{p['id']}': does not compile in Python: {e}")
            self.compiled.append((c, text, bool(SCANNED_FIELDS & set(p["fields"]))))

    def run(self, lines):
        res = []
        for line in lines:
            b = line.encode("utf-8", "surrogateescape")
            idxs = []
            for i, (c, text, scanned) in enumerate(self.compiled):
                if scanned and c.search(line if text else b):
                    idxs.append(i)
            res.append(([self.pats[i]["id"] for i in idxs], verdict(self.pats, idxs)))
        return res


class HyperscanEngine:
    """tapline's semantics through libhs.so: one block-mode database, SINGLEMATCH."""
    name = "hyperscan"
    FLAG = {"caseless": 1, "dotall": 2, "multiline": 4, "singlematch": 8, "utf8": 32,
            "ucp": 64}

    class CompileError(ctypes.Structure):
        _fields_ = [("message", ctypes.c_char_p), ("expression", ctypes.c_int)]

    def __init__(self, pats):
        libname = ctypes.util.find_library("hs") or "libhs.so.5"
        try:
            hs = ctypes.CDLL(libname)
        except OSError as e:
            raise ProfileError(f"hyperscan engine: cannot load libhs ({e})")
        self.hs, self.pats = hs, pats
        n = len(pats)
        exprs = (ctypes.c_char_p * n)(*[p["regex"].encode("utf-8") for p in pats])
        flags = (ctypes.c_uint * n)(*[
            8 | sum(self.FLAG.get(f, 0) for f in p["flags"]) for p in pats])
        ids = (ctypes.c_uint * n)(*range(n))
        db = ctypes.c_void_p()
        err = ctypes.POINTER(self.CompileError)()
        hs.hs_compile_multi.argtypes = [
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint), ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.POINTER(self.CompileError))]
        rc = hs.hs_compile_multi(exprs, flags, ids, n, 1, None, ctypes.byref(db),
                                 ctypes.byref(err))
        if rc != 0:
            msg = err.contents.message.decode() if err else f"error {rc}"
            idx = err.contents.expression if err else -1
            which = f"pattern '{pats[idx]['id']}': " if 0 <= idx < n else ""
            if err:
                hs.hs_free_compile_error(err)
            raise ProfileError(f"hyperscan engine: {which}{msg}")
        scratch = ctypes.c_void_p()
        hs.hs_alloc_scratch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        if hs.hs_alloc_scratch(db, ctypes.byref(scratch)) != 0:
            raise ProfileError("hyperscan engine: hs_alloc_scratch failed")
        self.db, self.scratch = db, scratch
        self.CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_ulonglong,
                                   ctypes.c_ulonglong, ctypes.c_uint, ctypes.c_void_p)
        hs.hs_scan.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint,
                               ctypes.c_uint, ctypes.c_void_p, self.CB, ctypes.c_void_p]
        self.scanned = [bool(SCANNED_FIELDS & set(p["fields"])) for p in pats]

    def run(self, lines):
        res = []
        hits = set()

        def on_match(idx, frm, to, flags, ctx):
            hits.add(idx)
            return 0

        cb = self.CB(on_match)
        for line in lines:
            b = line.encode("utf-8", "surrogateescape")
            hits.clear()
            rc = self.hs.hs_scan(self.db, b, len(b), 0, self.scratch, cb, None)
            if rc != 0:
                raise ProfileError(f"hyperscan engine: hs_scan failed ({rc})")
            idxs = sorted(i for i in hits if self.scanned[i])
            res.append(([self.pats[i]["id"] for i in idxs], verdict(self.pats, idxs)))
        return res

    def close(self):
        self.hs.hs_free_scratch(self.scratch)
        self.hs.hs_free_database(self.db)


class TaplineEngine:
    name = "tapline"

    def __init__(self, tapline, profile_path):
        self.tapline, self.profile_path = tapline, profile_path

    def run(self, lines):
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", errors="surrogateescape",
                                         suffix=".log", delete=False) as f:
            f.write("".join(line + "\n" for line in lines))
            path = f.name
        try:
            cmd = [self.tapline, "patterns", "test", self.profile_path, path, "--lines"]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except OSError as e:
                raise ProfileError(f"tapline engine: {self.tapline}: {e.strerror} "
                                   "(build it, pass --tapline, or use --python-engine)")
            if p.returncode != 0:
                raise ProfileError(f"tapline engine: '{' '.join(cmd)}' exited "
                                   f"{p.returncode}: {p.stderr.strip()[:800]}\n(without a "
                                   "working 'patterns test' command, use --python-engine "
                                   "or --engine hyperscan)")
        finally:
            os.unlink(path)
        got = {}
        for n, out in enumerate(p.stdout.splitlines(), 1):
            cols = out.split("\t")
            if len(cols) != 3 or not cols[0].isdigit() or cols[2] not in ("error", "tag", "-"):
                raise ProfileError(f"tapline engine: output line {n} is not "
                                   f"'<lineno>\\t<ids|->\\t<error|tag|->': {out[:200]!r}")
            got[int(cols[0])] = ([] if cols[1] == "-" else cols[1].split(","), cols[2])
        if 0 in got and len(lines) not in got:  # tolerate 0-based numbering
            got = {k + 1: v for k, v in got.items()}
        missing = [i for i in range(1, len(lines) + 1) if i not in got]
        if missing:
            raise ProfileError(f"tapline engine: no output for {len(missing)} of "
                               f"{len(lines)} lines (first: line {missing[0]})")
        return [got[i] for i in range(1, len(lines) + 1)]


# ---- scoring --------------------------------------------------------------------------
def read_dataset(data_dir, stem):
    """Rows of <data>/loghub/<stem>.log_structured.csv with the ground truth applied."""
    path = os.path.join(data_dir, "loghub", stem + ".log_structured.csv")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ProfileError(f"{path}: {e.strerror}")
    for need in ("LineId", "Level", "Content"):
        if rows and need not in rows[0]:
            raise ProfileError(f"{path}: no '{need}' column")
    out = []
    for i, r in enumerate(rows):
        # One row = one line of the file given to the engine: fold stray line breaks.
        content = r["Content"].replace("\r", " ").replace("\n", " ")
        out.append({"line_id": r.get("LineId") or str(i + 1), "level": r["Level"],
                    "event": r.get("EventId") or "?", "content": content,
                    "truth": is_error_line(r["Level"], r["Content"])})
    return out


EVENTLOG = os.path.join("spark-eventlog", "complex_dec_eventlog")
EVENTLOG_KEYS = ("Full Stack Trace", "Failure Reason", "Message")


def read_eventlog_failures(data_dir):
    """Supplementary Spark positives: the failure messages of the Spark event log (values
    of "Full Stack Trace", "Failure Reason" and "Message"): their first line and every
    "Caused by:" line, distinct, each an error line by construction (the same lines the
    corpus generator quotes as `error` values)."""
    import json
    path = os.path.join(data_dir, EVENTLOG)
    seen, out = set(), []

    def walk(o, n):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in EVENTLOG_KEYS and isinstance(v, str):
                    for j, ln in enumerate(v.split("\n")):
                        ln = ln.rstrip("\r")
                        if (j == 0 or ln.startswith("Caused by:")) and ln and ln not in seen:
                            seen.add(ln)
                            out.append({"line_id": f"{n}", "level": "-", "event": k,
                                        "content": ln, "truth": True})
                else:
                    walk(v, n)
        elif isinstance(o, list):
            for v in o:
                walk(v, n)

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line.startswith("{"):
                    try:
                        walk(json.loads(line), n)
                    except ValueError:
                        continue
    except OSError as e:
        raise ProfileError(f"{path}: {e.strerror}")
    return out


def ratio(num, den):
    return num / den if den else None


def fmt(v):
    return "n/a" if v is None else f"{v:.4f}"


def show_misses(kind, misses, limit, width):
    """List misses grouped by template (EventId), biggest group first: at most @limit
    lines in all and an even share per template; the rest of a template is summarised
    with its line ids."""
    if not misses:
        return
    print(f"  {kind} ({len(misses)}):")
    groups = {}
    for m in misses:
        groups.setdefault(m["event"], []).append(m)
    groups = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    per = max(3, limit // len(groups))
    shown = 0
    for event, ms in groups:
        take = ms[:max(0, min(per, limit - shown))]
        for m in take:
            content = m["content"]
            if width and len(content) > width:
                content = content[:width] + "..."
            print(f"    line {m['line_id']} [{m['level']} {event}] "
                  f"ids={','.join(m['ids']) or '-'}: {content}")
        shown += len(take)
        rest = ms[len(take):]
        if rest:
            ids = ",".join(x["line_id"] for x in rest[:12])
            print(f"    ... {len(rest)} more of template {event} "
                  f"(line ids {ids}{',...' if len(rest) > 12 else ''})")


def score_rows(engine, label, rows, args, note=""):
    lines = [r["content"] for r in rows]
    pred = engine.run(lines)
    other = PythonEngine(engine.pats).run(lines) if args.cross_check and \
        engine.name != "python" else None
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    fps, fns, disagree = [], [], []
    for i, r in enumerate(rows):
        ids, v = pred[i]
        p = v == "error"
        key = ("tp" if r["truth"] else "fp") if p else ("fn" if r["truth"] else "tn")
        c[key] += 1
        m = dict(r, ids=ids)
        if key == "fp":
            fps.append(m)
        elif key == "fn":
            fns.append(m)
        if other is not None and (sorted(other[i][0]) != sorted(ids) or other[i][1] != v):
            disagree.append((m, other[i]))
    n_err = c["tp"] + c["fn"]
    if n_err == 0:
        note += " - no error lines by the ground truth: measures false positives only"
    print(f"-- {label}: {len(rows)} lines, {n_err} error lines{note}")
    print(f"  TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  TN {c['tn']}  "
          f"precision {fmt(ratio(c['tp'], c['tp'] + c['fp']) if c['tp'] + c['fp'] else 1.0)}"
          f"{' (nothing predicted)' if c['tp'] + c['fp'] == 0 else ''}  "
          f"recall {fmt(ratio(c['tp'], n_err))}")
    if args.hits:
        counts = {}
        for ids, _ in pred:
            for x in ids:
                counts[x] = counts.get(x, 0) + 1
        for x, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  hits {x} {k}")
    show_misses("false positives", fps, args.max_misses, args.width)
    show_misses("false negatives", fns, args.max_misses, args.width)
    if other is not None:
        print(f"  cross-check {engine.name} vs python: {len(disagree)} disagreeing lines")
        for m, (oids, ov) in disagree[:args.max_misses]:
            print(f"    line {m['line_id']}: {engine.name} {','.join(m['ids']) or '-'} / "
                  f"python {','.join(oids) or '-'} ({ov}): {m['content'][:args.width]}")
    return c, len(disagree)


def score_profile(name, args):
    """Score one profile on its datasets and print its figures. @return 0, or 1 when a
    threshold is missed or the cross-check disagrees."""
    status = 0
    path = find_profile(name, args.profiles)
    prof = load_profile(path, args.profiles)
    pats = patterns_of(prof, os.path.relpath(path))
    pname = prof.get("name") or os.path.splitext(os.path.basename(path))[0]
    datasets = DATASETS.get(pname, [])
    print(f"== profile {pname} ({os.path.relpath(path)}): {len(pats)} patterns, "
          f"datasets: {', '.join(datasets) or 'none'}")
    checker = PythonEngine(pats)  # every regex must at least compile in Python
    if args.engine == "hyperscan" and not datasets:
        HyperscanEngine(pats).close()  # and in Hyperscan, when it is the engine
    if not datasets:
        print(f"  no dataset for {pname}: patterns checked, not scored")
        return 0
    if args.engine == "python":
        engine = checker
    elif args.engine == "hyperscan":
        engine = HyperscanEngine(pats)
    else:
        engine = TaplineEngine(args.tapline, path)
    engine.pats = pats
    tot = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for stem in datasets:
        c, dis = score_rows(engine, stem, read_dataset(args.data, stem), args)
        for k in tot:
            tot[k] += c[k]
        if dis:
            status = 1
    key = pname.replace("-", "_")
    pred = tot["tp"] + tot["fp"]
    prec = ratio(tot["tp"], pred) if pred else 1.0
    rec = ratio(tot["tp"], tot["tp"] + tot["fn"])
    print(f"  pooled over {', '.join(datasets)}: TP {tot['tp']}  FP {tot['fp']}  "
          f"FN {tot['fn']}  TN {tot['tn']}")
    if pred == 0:
        print("  note: nothing predicted as an error: precision is undefined, printed as 1.0")
    if rec is None:
        print("  note: no error lines in the ground truth: recall is undefined (n/a)")
    print(f"figure precision_{key} {fmt(prec)}")
    print(f"figure recall_{key} {fmt(rec)}")
    if args.min_precision is not None and prec < args.min_precision:
        status = 1
    if args.min_recall is not None and rec is not None and rec < args.min_recall:
        status = 1
    if pname in SUPPLEMENTARY and not args.no_supplementary:
        c, dis = score_rows(engine, "spark-eventlog failure messages",
                            read_eventlog_failures(args.data), args,
                            " (supplementary: every line is an error line by construction; "
                            "not pooled into precision_spark/recall_spark)")
        if dis:
            status = 1
    if isinstance(engine, HyperscanEngine):
        engine.close()
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", nargs="*", help=f"profiles to score (default: "
                    f"{' '.join(DEFAULT_PROFILES)})")
    ap.add_argument("--tapline", default=os.path.join(REPO, "build", "app", "tapline"),
                    help="tapline binary (default build/app/tapline)")
    ap.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared",
                    "data")), help="data directory with loghub/ (default ../shared/data)")
    ap.add_argument("--profiles", default=os.path.join(REPO, "config", "profiles"),
                    help="profile directory (default config/profiles)")
    ap.add_argument("--engine", choices=("tapline", "python", "hyperscan"), default="tapline")
    ap.add_argument("--python-engine", action="store_true",
                    help="same as --engine python (development fallback and cross-check)")
    ap.add_argument("--cross-check", action="store_true",
                    help="also run the python engine and list lines where it disagrees")
    ap.add_argument("--no-supplementary", action="store_true",
                    help="skip the Spark event-log failure messages")
    ap.add_argument("--hits", action="store_true", help="print per-pattern match counts")
    ap.add_argument("--max-misses", type=int, default=40,
                    help="misses listed per kind and dataset before summarising (40)")
    ap.add_argument("--width", type=int, default=240,
                    help="truncate listed contents to this many characters (0 = never)")
    ap.add_argument("--min-precision", type=float, help="exit 1 if a profile is below")
    ap.add_argument("--min-recall", type=float, help="exit 1 if a profile is below")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends quietly
    if args.python_engine:
        args.engine = "python"
    if yaml is None:
        print("score_patterns: the python3 yaml module is required (apt install "
              "python3-yaml)", file=sys.stderr)
        return 2

    print("# ground truth: Level ERROR/FATAL, or WARN with exception text "
          "(see scripts/score_patterns.py)")
    print(f"# engine: {args.engine}; data: {args.data}")
    status = 0
    for name in args.profile or DEFAULT_PROFILES:
        try:
            status = max(status, score_profile(name, args))
        except ProfileError as e:
            print(f"score_patterns: {e}", file=sys.stderr)
            return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
