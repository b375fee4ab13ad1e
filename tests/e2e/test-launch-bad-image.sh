#!/usr/bin/env bash
# A file that is no disk image is refused before anything is created, with
# the reason, whether given as a file:// URL, an absolute or a relative path.
. "$(dirname "$0")/lib.sh"

no_trace() {
	[ ! -e "$VMCTL_DATA/scopes/qemu/instances/$1" ] || fail "a folder was made for refused instance $1"
	expect_not_listed "$1"
}

vmctl launch file:///etc/passwd --name pw-url --timeout 60
expect_rc 2
expect_error 'not a disk image'
expect_err '/etc/passwd'
expect_err 'holds text'
no_trace pw-url

vmctl launch /etc/passwd --name pw-path --timeout 60
expect_rc 2
expect_error 'not a disk image'
no_trace pw-path

: >"$E2E_TMP/empty.img"
printf 'just some notes\n' >"$E2E_TMP/notes.img"
cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"
vmctl launch ./notes.img --name notes --timeout 60
expect_rc 2
expect_error 'not a disk image'
expect_err 'notes.img'
no_trace notes

vmctl launch "file://$E2E_TMP/empty.img" --name empty --timeout 60
expect_rc 2
expect_error 'empty'
no_trace empty

vmctl list
expect_rc 0
expect_out 'No instances found'

e2e_log PASS
