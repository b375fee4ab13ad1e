#!/usr/bin/env bash
# `vmctl transfer` between the host and a real guest: a file in and out,
# a folder with -r, missing parents with -p, standard input and output.
. "$(dirname "$0")/lib.sh"

src=$E2E_TMP/src
back=$E2E_TMP/back
mkdir -p "$src/tree/deep" "$back"
printf 'line one\nline two\n' >"$src/notes.txt"
head -c 300000 /dev/urandom >"$src/tree/deep/blob.bin"
echo "leaf" >"$src/tree/leaf.txt"

launch_fast xfer
expect_rc 0

# Host -> guest, relative to the default user's home.
vmctl transfer "$src/notes.txt" xfer:notes.txt
expect_rc 0
vmctl exec xfer -- cat notes.txt
expect_rc 0
[ "$OUT" = "$(cat "$src/notes.txt")" ] || fail "the guest's notes.txt is '$OUT'"

# A folder needs -r; with it, the whole tree arrives byte for byte.
vmctl transfer "$src/tree" xfer:
expect_error 'is a folder; copy folders with -r'
vmctl transfer "$src/missing.txt" xfer:
expect_error 'cannot copy .*missing.txt: No such file'
vmctl transfer -r "$src/tree" xfer:copied
expect_rc 0
vmctl exec xfer -- sha256sum copied/deep/blob.bin copied/leaf.txt
expect_rc 0
want=$(cd "$src/tree" && sha256sum deep/blob.bin leaf.txt | awk '{ print $1 }')
got=$(printf '%s\n' "$OUT" | awk '{ print $1 }')
[ "$got" = "$want" ] || fail "the copied tree differs: guest $got, host $want"

# -p creates the target's missing parents; without it the copy fails.
vmctl transfer "$src/notes.txt" xfer:/tmp/a/b/c/notes.txt
expect_error
vmctl transfer -p "$src/notes.txt" xfer:/tmp/a/b/c/notes.txt
expect_rc 0
vmctl exec xfer -- cat /tmp/a/b/c/notes.txt
expect_rc 0
expect_out '^line two$'

# Guest -> host, and guest -> standard output.
vmctl transfer xfer:copied/deep/blob.bin "$back/"
expect_rc 0
cmp -s "$src/tree/deep/blob.bin" "$back/blob.bin" || fail "blob.bin came back different"
vmctl transfer xfer:notes.txt -
expect_rc 0
[ "$OUT" = "$(cat "$src/notes.txt")" ] || fail "transfer to stdout printed '$OUT'"

# Standard input -> guest (run's stdin is /dev/null, so feed it directly).
e2e_log "\$ echo piped | vmctl transfer - xfer:piped.txt"
echo "piped through stdin" | "$VMCTL" transfer - xfer:piped.txt ||
	fail "transfer from stdin failed with status $?"
vmctl exec xfer -- cat piped.txt
expect_rc 0
[ "$OUT" = "piped through stdin" ] || fail "piped.txt holds '$OUT'"

# A missing file in the guest: clear error, nothing written on the host.
vmctl transfer xfer:no-such-file "$back/none"
expect_error
[ ! -e "$back/none" ] || fail "a failed copy left $back/none"

e2e_log PASS
