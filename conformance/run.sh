#!/usr/bin/env bash
# Copied from the shared Autobahn runner (/work/shared/autobahn/run.sh, with
# summarize.py and requirements-py27.txt, the latter byte for byte so that the cached
# venv stamp matches) so that CI, which has a fresh clone only,
# has its own copy; behaviour unchanged, only the paths in the messages differ.
# conformance/run.py drives it against our servers (docs/conformance.md).
#
# Run the Autobahn|Testsuite fuzzingclient (wstest, Python 2.7) against a
# WebSocket server on the loopback interface and print a summary.
#
#   conformance/run.sh [OPTIONS] URL [CASES] [OUTDIR]
#
#   URL      ws://127.0.0.1:PORT[/path]  (loopback only, see AUTOBAHN_ALLOW_NONLOCAL)
#   CASES    comma-separated case patterns, default "*"; a pattern starting
#            with "!" is excluded, e.g. "1.*,2.*" or "*,!9.*".  Autobahn turns
#            a pattern with "*" into a regex matched at the START only
#            ("12.*.1" also selects 12.x.10-12.x.18); without "*" it is one id
#   OUTDIR   report directory, default ${TMPDIR:-/tmp}/autobahn-reports/AGENT
#
# Options (before URL):
#   --fast               exclude the slow compression cases 12.* and 13.*
#   --exclude PATTERNS   comma-separated extra patterns to exclude
#   --deflate auto|yes|no  does the server claim permessage-deflate? decides
#                        whether UNIMPLEMENTED counts as failed (default auto:
#                        yes when it accepted deflate in any 12.*/13.* case)
#   --timeout SECS       hard limit for the wstest run (default 3600)
#   --agent NAME         agent name in the report (default from URL host/port/path)
#   --setup-only         create/check the venv and exit
#   -h, --help
#
# Environment: AUTOBAHN_VENV (default /tmp/autobahn-venv), AUTOBAHN_PY27
# (a Python 2.7 interpreter; default python2.7 on PATH, else the pyenv 2.7.18
# one), AUTOBAHN_ALLOW_NONLOCAL=1 to allow a non-loopback host.
#
# Exit status: 0 all counted cases passed, 1 some failed, 2 usage/setup
# error, 3 wstest did not produce a report (timeout, crash, server down).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/requirements-py27.txt"
VENV="${AUTOBAHN_VENV:-/tmp/autobahn-venv}"

usage() { sed -n '8,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "conformance/run.sh: $*" >&2; exit 2; }

FAST=0; EXTRA_EXCLUDE=""; DEFLATE=auto; TIMEOUT=3600; AGENT=""; SETUP_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) FAST=1; shift ;;
    --exclude) [ $# -ge 2 ] || die "--exclude needs a value"; EXTRA_EXCLUDE="$2"; shift 2 ;;
    --deflate) [ $# -ge 2 ] || die "--deflate needs a value"; DEFLATE="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
    --agent) [ $# -ge 2 ] || die "--agent needs a value"; AGENT="$2"; shift 2 ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
case "$DEFLATE" in auto|yes|no) ;; *) die "--deflate must be auto, yes or no" ;; esac
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a whole number of seconds"

# ---------------------------------------------------------------- venv setup
find_py27() {
  if [ -n "${AUTOBAHN_PY27:-}" ]; then echo "$AUTOBAHN_PY27"; return; fi
  local c
  for c in python2.7 python2 "$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      command -v "$c"; return
    fi
  done
  return 1
}

ensure_venv() {
  local stamp="$VENV/.autobahn-reqs.sha256" want
  want="$(sha256sum "$REQS" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/wstest" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  local py
  py="$(find_py27)" || die "no Python 2.7 interpreter found; set AUTOBAHN_PY27"
  echo "conformance/run.sh: setting up $VENV with $py" >&2
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m virtualenv --version >/dev/null 2>&1; then
      # last virtualenv release that still runs on Python 2.7
      "$py" -m pip install --user -q "virtualenv==20.15.1" >&2 || die "cannot install virtualenv"
    fi
    "$py" -m virtualenv -q "$VENV" >&2 || die "cannot create $VENV"
  fi
  # wsaccel (pulled in by autobahn[accelerate]) compiles a C extension: needs gcc
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
      -r "$REQS" 2>&1 | grep -v -e '^DEPRECATION: Python 2.7' -e "is ignored: it is neither" >&2 || true
  "$VENV/bin/wstest" -a >/dev/null 2>&1 || die "wstest does not start in $VENV (see pip output above)"
  echo "$want" > "$stamp"
}

ensure_venv
if [ "$SETUP_ONLY" = 1 ]; then "$VENV/bin/wstest" -a; exit 0; fi

# ---------------------------------------------------------------- arguments
[ $# -ge 1 ] || { usage >&2; exit 2; }
URL="$1"; CASES="${2:-*}"; OUTDIR="${3:-}"

[[ "$URL" =~ ^wss?://(\[[^]]+\]|[^/:]+)(:([0-9]+))?(/.*)?$ ]] || die "not a ws:// URL: $URL"
HOST="${BASH_REMATCH[1]}"; PORT="${BASH_REMATCH[3]}"; UPATH="${BASH_REMATCH[4]}"
case "$HOST" in
  127.*|localhost|"[::1]") ;;
  *) [ "${AUTOBAHN_ALLOW_NONLOCAL:-0}" = 1 ] || die "host $HOST is not loopback; only 127.0.0.1/localhost/[::1] are allowed (AUTOBAHN_ALLOW_NONLOCAL=1 overrides)" ;;
esac
if [ -z "$AGENT" ]; then
  AGENT="$(printf '%s_%s%s' "$HOST" "${PORT:-80}" "$UPATH" | tr -c 'A-Za-z0-9._-' '_' | sed 's/_*$//')"
fi
OUTDIR="${OUTDIR:-${TMPDIR:-/tmp}/autobahn-reports/$AGENT}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

EXCLUDE="$EXTRA_EXCLUDE"
[ "$FAST" = 1 ] && EXCLUDE="${EXCLUDE:+$EXCLUDE,}12.*,13.*"

SPEC="$OUTDIR/spec.json"
"$VENV/bin/python" - "$URL" "$AGENT" "$OUTDIR" "$CASES" "$EXCLUDE" > "$SPEC" <<'PY'
import json, sys
url, agent, outdir, cases, exclude = sys.argv[1:6]
inc, exc = [], [p.strip() for p in exclude.split(",") if p.strip()]
for p in cases.split(","):
    p = p.strip()
    if p.startswith("!"):
        exc.append(p[1:])
    elif p:
        inc.append(p)
spec = {
    "options": {"failByDrop": False},
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": inc or ["*"],
    "exclude-cases": exc,
    "exclude-agent-cases": {},
}
print(json.dumps(spec, indent=2, sort_keys=True))
PY

# Stale results from an earlier run must not be summarized.
rm -f "$OUTDIR/index.json" "$OUTDIR/index.html"
find "$OUTDIR" -maxdepth 1 -type f \( -name '*_case_*.json' -o -name '*_case_*.html' \) -delete

echo "conformance/run.sh: wstest -m fuzzingclient against $URL (agent $AGENT, cases ${CASES}${EXCLUDE:+, excluding $EXCLUDE}, limit ${TIMEOUT}s)" >&2
LOG="$OUTDIR/wstest.log"
START=$(date +%s)
set +e
( cd "$OUTDIR" && timeout --kill-after=10 "$TIMEOUT" "$VENV/bin/wstest" -m fuzzingclient -s "$SPEC" ) > "$LOG" 2>&1
RC=$?
set -e
ELAPSED=$(( $(date +%s) - START ))
echo "conformance/run.sh: wstest exited $RC after ${ELAPSED}s (log: $LOG)" >&2
if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
  echo "conformance/run.sh: wstest hit the ${TIMEOUT}s limit; no complete report" >&2
  tail -5 "$LOG" >&2
  exit 3
fi
if [ ! -f "$OUTDIR/index.json" ]; then
  echo "conformance/run.sh: wstest wrote no index.json (exit $RC); last log lines:" >&2
  tail -15 "$LOG" >&2
  exit 3
fi

set +e
"$VENV/bin/python" "$HERE/summarize.py" "$OUTDIR" --agent "$AGENT" --deflate "$DEFLATE"
SRC=$?
set -e
exit "$SRC"
