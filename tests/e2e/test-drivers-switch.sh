#!/usr/bin/env bash
# Third-party helpers and the checks before a switch. A stand-in helper
# built on the SDK (tests/e2e/fixtures/example-helper.c), copied onto
# VMCTL_HELPER_PATH, shows in `vmctl drivers` and can be selected, with its
# own scope or, when its hello names one, qemu's. A switch to a driver that
# cannot be used is refused before anything changes, with the reason: a
# helper that exits at once, one that answers hello with garbage, one whose
# hello says usable=false, lxd with no LXD behind its socket, a driver with
# no helper; local.driver stays qemu and the running instance keeps running
# in the same QEMU process.
. "$(dirname "$0")/lib.sh"

FIXTURE=$VMCTL_BIN_DIR/../tests/e2e-helpers/vmctl-example-helper
[ -x "$FIXTURE" ] || fail "$FIXTURE is not built"
HP=$E2E_TMP/helpers
mkdir -p "$HP"
export VMCTL_HELPER_PATH=$HP
cp "$FIXTURE" "$HP/vmctl-toy-helper"
cp "$FIXTURE" "$HP/vmctl-shared-helper"
echo qemu >"$HP/vmctl-shared-helper.scope"
cp "$FIXTURE" "$HP/vmctl-broken-helper"
echo "the broken hypervisor is not installed" >"$HP/vmctl-broken-helper.unusable"
# Describes itself, then exits at once when started for real.
cat >"$HP/vmctl-crash-helper" <<'EOF2'
#!/bin/sh
if [ "$1" = --describe ]; then
	printf 'driver crash\nscope crash\nversion 1\nfeatures suspend\n'
	exit 0
fi
exit 3
EOF2
# Describes itself, then answers hello with bytes that are no message.
cat >"$HP/vmctl-liar-helper" <<'EOF2'
#!/bin/sh
if [ "$1" = --describe ]; then
	printf 'driver liar\nscope liar\nversion 1\nfeatures\n'
	exit 0
fi
head -c 1 >/dev/null
printf '\301\301\301\301'
sleep 30
EOF2
chmod 755 "$HP/vmctl-crash-helper" "$HP/vmctl-liar-helper"

# No daemon of the host's is touched (see test-drivers-list.sh).
vmctl set local.libvirt.uri=test:///default
expect_rc 0
vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
expect_rc 0

vmctl drivers
expect_rc 0
expect_out '^toy +no +yes +toy +1\.0-example +no +no +no +no +no +'"$HP"'/vmctl-toy-helper$'
expect_out '^shared +no +yes +qemu +1\.0-example +'
expect_out '^broken +no +no +broken +1\.0-example +'
expect_out '^broken: the broken driver cannot run on this host: the broken hypervisor is not installed$'
# What --describe said stays: it never answered hello.
expect_out '^crash +no +no +crash +1 +no +no +no +no +yes +'
expect_out '^crash: the crash helper .*exited unexpectedly \(exited with status 3\) before answering hello$'
expect_out '^liar +no +no +liar +'
expect_out '^liar: the liar helper .*broke the protocol \(invalid MessagePack byte 0xc1\) and was killed before answering hello$'
# The seed's drivers first, then the others by name.
order=$(printf '%s\n' "$OUT" | awk 'NR > 1 && NF >= 11 && $2 ~ /^(yes|no)$/ { print $1 }' | tr '\n' ' ')
[ "$order" = "qemu libvirt lxd hyperv virtualbox broken crash liar shared toy " ] ||
	fail "rows in the order: $order"

# A usable third-party driver is selected, with its own empty scope.
vmctl set local.driver=toy
expect_rc 0
vmctl get local.driver
expect_out '^toy$'
vmctl version
expect_out 'driver +toy'
vmctl drivers --format csv
expect_out '^toy,yes,yes,,toy,'
expect_out '^qemu,no,yes,,qemu,'
vmctl list
expect_rc 0
# One whose hello names qemu's scope shares it.
vmctl set local.driver=shared
expect_rc 0
vmctl drivers --format csv
expect_out '^shared,yes,yes,,qemu,'
vmctl set local.driver=qemu
expect_rc 0

# A running instance of the qemu scope, to show nothing happens to it.
launch_fast keep
expect_rc 0
expect_state keep Running
qpid=$(qemu_pids)
[ -n "$qpid" ] || fail "no QEMU runs for keep"

refused() { # DRIVER REASON-REGEX
	vmctl set local.driver="$1"
	expect_error "$2"
	expect_err 'local.driver is still qemu'
	vmctl get local.driver
	expect_out '^qemu$'
	expect_state keep Running
	[ "$(qemu_pids)" = "$qpid" ] || fail "keep's QEMU changed after the refused switch to $1"
	grep -q '^local.driver: qemu$' "$VMCTL_DATA/settings.yaml" || fail "settings.yaml changed"
}
refused crash 'cannot switch to the crash driver: the crash helper .*exited unexpectedly \(exited with status 3\) before answering hello'
refused liar 'cannot switch to the liar driver: the liar helper .*broke the protocol \(invalid MessagePack byte 0xc1\)'
refused broken 'cannot switch to the broken driver: the broken driver cannot run on this host: the broken hypervisor is not installed'
refused lxd "cannot switch to the lxd driver: the lxd driver cannot run on this host: LXD socket $E2E_TMP/no-lxd.sock: .*is lxd running"
refused nosuch 'vmctl-nosuch-helper was not found'
# A helper removed since it was listed.
rm "$HP/vmctl-toy-helper"
refused toy 'vmctl-toy-helper was not found'

vmctl exec keep -- true
expect_rc 0
for name in vmctl-crash-hel vmctl-liar-help vmctl-broken-he vmctl-lxd-helpe; do
	[ -z "$(e2e_pids_named "$name")" ] || fail "$name is still running"
done
e2e_log "PASS"
