#!/usr/bin/env bash
# The native modules' tests (_native.c, and _wirecheck.c, which reads the untrusted request bytes
# first) under AddressSanitizer + UndefinedBehaviorSanitizer, and under valgrind memcheck. Slow (ASan ~1 min, valgrind ~15 min on 2 cores), so not part of the default suite.
#
#   scripts/native_sanitize.sh [asan|valgrind|all] [pytest args...]     (default: all)
#
# Environment: PYTHON (default: python), NATIVE_SOURCE (default: processors/_native.c; another
# revision's source to show what the tests catch in it), TESTS (default: the three native test
# files below), LOG_DIR (keep valgrind's logs there).
#
# Each build goes to a temporary folder, not over the in-place module other tests use, and a small
# pytest plugin makes `spansignals.processors._native` load it (pytest prints which file in its
# header). ASan needs its runtime loaded first: LD_PRELOAD of gcc's libasan; PYTHONMALLOC=malloc
# so that each Python object is its own allocation that ASan and valgrind can see past the end
# of, or after it is freed. ASan's leak check is off (the interpreter does not free everything
# at exit); leaks are the tests' job (tracemalloc, object and reference counts) and valgrind's:
# its reports (errors and definite losses) whose stack passes through _native.c fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
[ $# -gt 0 ] && shift
PYTHON=${PYTHON:-python}
SOURCE=${NATIVE_SOURCE:-processors/_native.c}
TESTS=${TESTS:-tests/processors/test_native_safety.py tests/processors/collector/test_spanscan.py tests/processors/test_red_grouping.py tests/processors/collector/test_wirecheck.py}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$SOURCE" "$work/_native.c" # so that reports name _native.c whichever file was given
cp processors/_wirecheck.c "$work/_wirecheck.c"
SOURCE_NAME=$SOURCE
SOURCE="$work/_native.c"
include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

cat >"$work/native_under_test.py" <<'EOF'
"""pytest plugin: import spansignals.processors._native from $SPANSIGNALS_NATIVE_SO, and
spansignals.processors._wirecheck from the same folder."""
import importlib.util
import os
import sys

_PATH = os.environ["SPANSIGNALS_NATIVE_SO"]
_PATHS = {
    "spansignals.processors._native": _PATH,
    "spansignals.processors._wirecheck": _PATH.replace("/_native", "/_wirecheck"),
}


class _Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        where = _PATHS.get(name)
        return importlib.util.spec_from_file_location(name, where) if where else None


sys.meta_path.insert(0, _Finder)


def pytest_report_header(config):
    return f"native modules under test: {', '.join(_PATHS.values())}"


def pytest_sessionfinish(session, exitstatus):
    for name, where in _PATHS.items():
        module = sys.modules.get(name)
        if module is not None and module.__file__ != where:
            raise SystemExit(f"the tests used {module.__file__}, not {where}")
EOF

pytest_options=()
run_pytest() { # command... -- runs pytest on $TESTS with the plugin, $pytest_options and the arguments given
    PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}" "$@" -m pytest -p native_under_test -p no:cacheprovider -q \
        "${pytest_options[@]}" $TESTS "${extra[@]}"
}
extra=("$@")
status=0

if [ "$mode" = asan ] || [ "$mode" = all ]; then
    so="$work/asan/_native$suffix"
    mkdir -p "$work/asan"
    for module in _native _wirecheck; do
        gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
            -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-cast-function-type \
            -I"$include" "$work/$module.c" -o "$work/asan/$module$suffix"
    done
    echo "== AddressSanitizer + UBSan: $SOURCE_NAME"
    SPANSIGNALS_NATIVE_SO="$so" SPANSIGNALS_SANITIZER=asan LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:print_summary=1 UBSAN_OPTIONS=print_stacktrace=1 \
        PYTHONMALLOC=malloc run_pytest "$PYTHON" || status=$?
    echo "== AddressSanitizer: exit $status"
fi

if [ "$mode" = valgrind ] || [ "$mode" = all ]; then
    so="$work/plain/_native$suffix"
    mkdir -p "$work/plain"
    for module in _native _wirecheck; do
        gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer -I"$include" "$work/$module.c" -o "$work/plain/$module$suffix"
    done
    suppressions=()
    for supp in /usr/lib/valgrind/python3.supp "$(dirname "$include")/../lib/valgrind-python.supp"; do
        [ -f "$supp" ] && suppressions+=("--suppressions=$supp")
    done
    log="$work/valgrind.%p.log" # one per process: the tests' child processes are checked too
    echo "== valgrind memcheck: $SOURCE_NAME (${suppressions[*]:-no suppressions})"
    vstatus=0
    pytest_options=(--timeout=0) # ~50x slower: the largest equivalence test takes more than pytest's 300 s
    SPANSIGNALS_NATIVE_SO="$so" PYTHONMALLOC=malloc run_pytest valgrind --tool=memcheck \
        --trace-children=yes --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=none \
        --num-callers=40 \
        "${suppressions[@]}" --log-file="$log" "$PYTHON" || vstatus=$?
    [ "$vstatus" = 0 ] || echo "== the tests failed under valgrind (exit $vstatus)"
    grep -hE "ERROR SUMMARY" "$work"/valgrind.*.log | sort | uniq -c
    # The interpreter reports a few of its own (uninitialised values in longobject.c, an AVX2
    # memcmp reading a whole vector; "definitely lost" tracebacks of tracemalloc, which the leak
    # tests turn on, made when it traced an allocation of the module): listed by kind, not
    # failing. Any other report, or definite loss, whose stack passes through the module fails.
    records() { awk '/^==[0-9]+== *$/ {if (rec != "") print rec "\n\x1e"; rec = ""; next} {rec = rec "\n" $0} END {print rec}' "$work"/valgrind.*.log; }
    echo "== reports outside the module, by kind:"
    records | awk 'BEGIN {RS = "\x1e"} (!/\((_native|_wirecheck)\.c:[0-9]+\)/ || /_tracemalloc\.c/) && /(Invalid|uninitialised|Mismatched|overlap|Syscall param|definitely lost)/ {
        if (match($0, /== (Invalid [a-z]+|Conditional jump|Use of uninitialised|Mismatched|Source and destination|Syscall param|[0-9,]+ bytes in [0-9,]+ blocks are definitely lost)/))
            print substr($0, RSTART + 3, RLENGTH - 3)}' | sort | uniq -c
    ours=$(records | awk 'BEGIN {RS = "\x1e"} /\((_native|_wirecheck)\.c:[0-9]+\)/ && !/_tracemalloc\.c/')
    if [ -n "$ours" ]; then
        echo "== reports through _native.c or _wirecheck.c:"
        echo "$ours"
        vstatus=98
    else
        echo "== reports through _native.c or _wirecheck.c: none"
    fi
    if [ -n "${LOG_DIR:-}" ]; then
        mkdir -p "$LOG_DIR" && cp "$work"/valgrind.*.log "$LOG_DIR"/
    fi
    echo "== valgrind: exit $vstatus"
    [ "$vstatus" = 0 ] || status=$vstatus
fi
exit $status
