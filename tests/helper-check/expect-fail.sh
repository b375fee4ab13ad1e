#!/bin/sh
# expect-fail.sh REGEX CHECKER ARGS...: the checker must exit 1 and print a
# FAIL line matching REGEX (so it fails for the right reason).
regex=$1
shift
out=$("$@")
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 1 ] || { echo "expected exit status 1, got $rc" >&2; exit 1; }
printf '%s\n' "$out" | grep -qE "^FAIL $regex" || { echo "no FAIL line matches /$regex/" >&2; exit 1; }
printf '%s\n' "$out" | grep -qE '^[0-9]+ passed, [1-9][0-9]* failed$' || { echo "no summary line" >&2; exit 1; }
