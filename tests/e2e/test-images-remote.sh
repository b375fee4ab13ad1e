#!/bin/bash
# Images by alias from a simplestreams mirror: find, launch (download,
# verification, direct kernel boot), a second launch served from the cache
# without a download, and a tree whose disk does not match its sha256.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:?VMCTL_SOURCE_DIR must name the source tree}
ALIAS=vmctl-e2e-fast
BAD_ALIAS=vmctl-e2e-corrupt
LAUNCH_TIMEOUT=$((FAST_TIMEOUT + 300)) # the download comes on top of the boot
SERVER_PID=

# The HTTP server is ours, not vmctl's: stop it by pid, then the usual cleanup.
images_cleanup() {
	local rc=$?
	if [ -n "$SERVER_PID" ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	(exit "$rc")
	e2e_cleanup
}
trap images_cleanup EXIT

# Our own links to the images, so that a rebuild of $IMAGES replacing its
# files mid-test cannot change what is served (copy across file systems).
place() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2" || fail "cannot copy $1"; }
mkdir -p "$E2E_TMP/images" "$E2E_TMP/mirror"
for ext in qcow2 vmlinuz initrd cmdline; do
	place "$IMAGES/fast.$ext" "$E2E_TMP/images/fast.$ext"
done
# A small disk of our own for the corrupt tree: its served copy is modified
# in place, which must never touch a file shared with $IMAGES.
qemu-img create -q -f qcow2 "$E2E_TMP/images/corrupt.qcow2" 16M || fail "qemu-img create failed"
run python3 "$SRC/tools/publish-streams.py" --out "$E2E_TMP/mirror" "$E2E_TMP/images" \
	"fast=$ALIAS" "corrupt=$BAD_ALIAS"
expect_rc 0

python3 "$SRC/tools/test-http-server.py" --root "$E2E_TMP/mirror" \
	--port-file "$E2E_TMP/port" --log "$E2E_TMP/http.log" 2>"$E2E_TMP/http.err" &
SERVER_PID=$!
wait_until 30 test -s "$E2E_TMP/port" || fail "the HTTP server did not start: $(cat "$E2E_TMP/http.err")"
PORT=$(cat "$E2E_TMP/port")

# Requests for the fast image's files (disk, kernel, initrd) in the
# server's log, whose lines read "METHOD PATH STATUS".
disk_requests() { grep -c '^GET /releases/server/releases/fast/' "$E2E_TMP/http.log"; }

vmctl set "local.image.mirror=http://127.0.0.1:$PORT/"
expect_rc 0
vmctl find
expect_rc 0
expect_out "$ALIAS"

vmctl launch "$ALIAS" --name a --timeout "$LAUNCH_TIMEOUT"
expect_rc 0
[ "$(disk_requests)" -ge 1 ] || fail "the launch did not download the disk from the mirror"
expect_state a Running
vmctl exec a -- uname -r
expect_rc 0
expect_out "^$(cat "$IMAGES/kernel-release")\$"
vmctl info a
expect_rc 0
expect_out "Image: .*$ALIAS"

before=$(disk_requests)
vmctl launch "$ALIAS" --name b --timeout "$LAUNCH_TIMEOUT"
expect_rc 0
expect_state b Running
after=$(disk_requests)
[ "$after" -eq "$before" ] ||
	fail "the second launch requested the disk again ($before disk requests before, $after after)"

# Flip one byte of the served disk: the products file's sha256 no longer holds.
served=$(find "$E2E_TMP/mirror" -path '*/releases/corrupt/*' -name '*.img' | head -n 1)
[ -n "$served" ] || fail "publish-streams.py wrote no disk for the corrupt image"
printf '\377' | dd of="$served" bs=1 seek=100 conv=notrunc status=none || fail "cannot corrupt $served"
vmctl launch "$BAD_ALIAS" --name c --timeout "$LAUNCH_TIMEOUT"
expect_error "sha256"
expect_err "verification"
expect_not_listed c

# Only verified files in the cache: every image file is named by its content.
for f in "$VMCTL_DATA"/images/*; do
	[ -f "$f" ] || continue
	base=$(basename "$f")
	case $base in
	*.qcow2 | *.img | *.vmlinuz | *.initrd)
		sum=$(sha256sum "$f" | cut -d' ' -f1)
		[ "$sum" = "${base%.*}" ] || fail "cached $base holds content with sha256 $sum" ;;
	esac
done
for f in "$VMCTL_DATA"/images/.partial-*; do
	[ ! -e "$f" ] || fail "a partial download was left behind: $(basename "$f")"
done

vmctl delete --purge a b
expect_rc 0
e2e_log "PASS"
