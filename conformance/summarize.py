"""Summarize an Autobahn|Testsuite fuzzingclient report (index.json).

    python summarize.py REPORT_DIR [--agent NAME] [--deflate auto|yes|no]

Runs under Python 2.7 (the wstest venv) and Python 3.

Copied from the shared Autobahn runner (/work/shared/autobahn/summarize.py),
unchanged; run.sh calls it.  Counting rule (see docs/conformance.md):
  passed = OK + NON-STRICT + INFORMATIONAL            (Autobahn's own "Pass",
                                                       "Non-Strict", "Info")
  failed = FAILED (and any other non-pass behaviour such as WRONG CODE)
           + UNIMPLEMENTED, but only when the server claims permessage-deflate
  skipped = UNIMPLEMENTED when the server does not claim permessage-deflate

"Claims permessage-deflate" with --deflate auto (the default): the server
accepted the extension in at least one 12.*/13.* case of this run, i.e. at
least one of those cases is not UNIMPLEMENTED.  --deflate yes / no forces it.

The verdict follows the "behavior" field only, as Autobahn's HTML report does;
a non-OK closing behaviour (behaviorClose) is listed as a note, not counted.

Output: one line per category, the failed cases (id, behaviour, reason), then
the overall line "N passed, N failed" (", N skipped" appended when N > 0) as
the very last line.  Exit status: 0 all passed, 1 some failed, 3 bad report.
"""
from __future__ import print_function

import argparse
import io
import json
import os
import sys

CATEGORIES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Miscellaneous",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}

PASS = ("OK", "NON-STRICT", "INFORMATIONAL")


def case_key(case_id):
    out = []
    for part in case_id.split("."):
        try:
            out.append((0, int(part), ""))
        except ValueError:
            out.append((1, 0, part))
    return out


def load_json(path):
    with io.open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def shorten(text, limit=160):
    text = " ".join(("%s" % (text,)).split())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def main(argv=None):
    ap = argparse.ArgumentParser(description="Summarize an Autobahn fuzzingclient report")
    ap.add_argument("report_dir")
    ap.add_argument("--agent", default=None, help="agent to summarize (default: the only/first one)")
    ap.add_argument("--deflate", choices=("auto", "yes", "no"), default="auto",
                    help="does the server claim permessage-deflate? (UNIMPLEMENTED counts as failed if so)")
    ap.add_argument("--max-failed", type=int, default=200, help="list at most this many failed cases")
    args = ap.parse_args(argv)

    index_path = os.path.join(args.report_dir, "index.json")
    if not os.path.isfile(index_path):
        print("error: no report at %s (did wstest finish?)" % index_path, file=sys.stderr)
        return 3
    index = load_json(index_path)
    if not index:
        print("error: %s holds no result (was the server reachable? see wstest.log)" % index_path, file=sys.stderr)
        return 3
    agent = args.agent if args.agent in index else sorted(index)[0]
    cases = index[agent]
    ids = sorted(cases, key=case_key)

    compression_ids = [c for c in ids if c.split(".")[0] in ("12", "13")]
    if args.deflate == "auto":
        claims_deflate = any(cases[c]["behavior"] != "UNIMPLEMENTED" for c in compression_ids)
    else:
        claims_deflate = args.deflate == "yes"

    per_cat = {}
    failed, close_notes = [], []
    n_pass = n_fail = n_skip = 0
    for cid in ids:
        c = cases[cid]
        beh = c.get("behavior")
        cat = cid.split(".")[0]
        st = per_cat.setdefault(cat, {"total": 0, "pass": 0, "fail": 0, "skip": 0, "by": {}})
        st["total"] += 1
        st["by"][beh] = st["by"].get(beh, 0) + 1
        if beh in PASS:
            st["pass"] += 1
            n_pass += 1
        elif beh == "UNIMPLEMENTED" and not claims_deflate:
            st["skip"] += 1
            n_skip += 1
        else:
            st["fail"] += 1
            n_fail += 1
            failed.append(cid)
        if beh in PASS and c.get("behaviorClose") not in ("OK", "INFORMATIONAL"):
            close_notes.append(cid)

    def reason(cid):
        c = cases[cid]
        detail = {}
        rf = c.get("reportfile")
        if rf:
            p = os.path.join(args.report_dir, rf)
            if os.path.isfile(p):
                try:
                    detail = load_json(p)
                except ValueError:
                    detail = {}
        res = detail.get("result", "")
        if c.get("behavior") == "UNIMPLEMENTED" and not res:
            res = "server declined the permessage-deflate offer of this case"
        close = detail.get("resultClose", "")
        return shorten("%s | close: %s (%s, code %s)" % (
            res, close, c.get("behaviorClose"), c.get("remoteCloseCode")))

    if compression_ids or args.deflate != "auto":
        claim = "%s (%s)" % ("yes" if claims_deflate else "no", args.deflate)
    else:
        claim = "n/a (no 12.*/13.* case run)"
    print("Autobahn fuzzingclient report: agent=%s, %d cases, permessage-deflate claimed: %s"
          % (agent, len(ids), claim))
    for cat in sorted(per_cat, key=int):
        st = per_cat[cat]
        by = ", ".join("%s %d" % (k, v) for k, v in sorted(st["by"].items(), key=lambda kv: str(kv[0])))
        print("  %-3s %-26s %4d/%-4d pass  %3d fail  %3d skip   [%s]"
              % (cat, CATEGORIES.get(cat, "?"), st["pass"], st["total"], st["fail"], st["skip"], by))
    if failed:
        print("Failed cases (%d):" % len(failed))
        for cid in failed[: args.max_failed]:
            print("  %-9s %-13s %s" % (cid, cases[cid].get("behavior"), reason(cid)))
        if len(failed) > args.max_failed:
            print("  ... %d more, see %s" % (len(failed) - args.max_failed, index_path))
    if close_notes:
        print("Note: %d passing case(s) with a non-OK closing behaviour (not counted): %s"
              % (len(close_notes), ", ".join("%s=%s" % (c, cases[c].get("behaviorClose")) for c in close_notes[:20])
                 + (" ..." if len(close_notes) > 20 else "")))
    print("Report: %s" % os.path.join(args.report_dir, "index.html"))
    line = "%d passed, %d failed" % (n_pass, n_fail)
    if n_skip:
        line += ", %d skipped" % n_skip
    print(line)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
