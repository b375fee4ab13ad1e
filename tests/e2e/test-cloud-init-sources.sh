#!/usr/bin/env bash
# --cloud-init - (standard input) and --cloud-init URL (fetched by the
# broker from an HTTP server of the test on the loopback): the user data
# reaches the instance's seed; a URL that answers 404, a document over
# 1 MiB, one that is no cloud-config, a URL of another scheme and broken
# YAML on standard input are refused with a message and nothing is created.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:?VMCTL_SOURCE_DIR must name the source tree}
SERVER_PID=

sources_cleanup() {
	local rc=$?
	if [ -n "$SERVER_PID" ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	(exit "$rc")
	e2e_cleanup
}
trap sources_cleanup EXIT

# run_stdin FILE CMD...: run with FILE on standard input.
run_stdin() {
	local input=$1
	shift
	e2e_log "\$ $* < $input"
	"$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err" <"$input"
	RC=$?
	OUT=$(cat "$E2E_TMP/out")
	ERR=$(cat "$E2E_TMP/err")
	[ -z "$OUT" ] || printf '%s\n' "$OUT" | sed 's/^/  out| /' >&2
	[ -z "$ERR" ] || printf '%s\n' "$ERR" | sed 's/^/  err| /' >&2
	[ "$RC" -eq 0 ] || e2e_log "  exit status $RC"
}

# Nothing was created by a refused launch.
expect_nothing_made() {
	expect_not_listed "$1"
	[ ! -e "$VMCTL_DATA/scopes/qemu/instances/$1" ] || fail "a folder was made for $1"
}

WWW=$E2E_TMP/www
mkdir -p "$WWW"
printf '#cloud-config\n# marker: from-the-url\nwrite_files: []\n' >"$WWW/user-data.yaml"
printf '#!/bin/sh\necho a script, not cloud-config\n' >"$WWW/script.sh"
{
	echo '#cloud-config'
	head -c 1100000 /dev/zero | tr '\0' '#' | fold -w 100
} >"$WWW/big.yaml"
printf '#cloud-config\n# marker: from-stdin\n' >"$E2E_TMP/stdin.yaml"
printf 'packages: [a\n' >"$E2E_TMP/broken.yaml"

python3 "$SRC/tools/test-http-server.py" --root "$WWW" \
	--port-file "$E2E_TMP/port" --log "$E2E_TMP/http.log" 2>"$E2E_TMP/http.err" &
SERVER_PID=$!
wait_until 30 test -s "$E2E_TMP/port" || fail "the HTTP server did not start: $(cat "$E2E_TMP/http.err")"
URL=http://127.0.0.1:$(cat "$E2E_TMP/port")

launch_fast gone --cloud-init "$URL/missing.yaml"
expect_rc 2
expect_error "404"
expect_err "missing.yaml"
expect_nothing_made gone

launch_fast big --cloud-init "$URL/big.yaml"
expect_rc 2
expect_error "larger than 1048576 bytes"
expect_nothing_made big

launch_fast script --cloud-init "$URL/script.sh"
expect_rc 2
expect_error "not cloud-config"
expect_nothing_made script

launch_fast ftp --cloud-init ftp://127.0.0.1/user-data.yaml
expect_rc 2
expect_error "only http:// and https://"
expect_nothing_made ftp

run_stdin "$E2E_TMP/broken.yaml" "$VMCTL" launch "$FAST_IMAGE" --name broken --cloud-init -
expect_rc 2
expect_error "standard input.*line 2"
expect_nothing_made broken

run_stdin "$E2E_TMP/stdin.yaml" "$VMCTL" launch "$FAST_IMAGE" --name piped --cloud-init - \
	--timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec piped -- sudo cat /run/vmctl-seed/user-data
expect_rc 0
expect_out "marker: from-stdin"

launch_fast fetched --cloud-init "$URL/user-data.yaml"
expect_rc 0
grep -q '^GET /user-data.yaml 200' "$E2E_TMP/http.log" || fail "the broker did not fetch the URL"
vmctl exec fetched -- sudo cat /run/vmctl-seed/user-data
expect_rc 0
expect_out "marker: from-the-url"
# Our own key is still there beside the user's part: exec worked.

e2e_log PASS
