#!/usr/bin/env bash
# Features the active driver lacks are refused before anything is done, with
# a message naming the driver and the drivers that have them. Needs no VM:
# the libvirt driver has no snapshots, clones or native mounts.
. "$(dirname "$0")/lib.sh"

mkdir -p "$E2E_TMP/share"
vmctl set local.driver=libvirt
expect_rc 0

vmctl snapshot ghost
expect_error 'snapshots are not supported by the libvirt driver; drivers that have them: qemu'
vmctl restore ghost.s1
expect_error 'snapshots are not supported by the libvirt driver'
vmctl list --snapshots
expect_error 'snapshots are not supported by the libvirt driver'
vmctl clone ghost
expect_error 'clone is not supported by the libvirt driver; drivers that have it: qemu'
vmctl mount --type native "$E2E_TMP/share" ghost
expect_error 'native mounts are not supported by the libvirt driver; drivers that have them: qemu'
vmctl umount ghost
expect_error 'native mounts are not supported by the libvirt driver'
# Classic mounts are the broker's, on every driver: not a feature refusal.
vmctl mount "$E2E_TMP/share" ghost
expect_error 'instance "ghost" does not exist'

vmctl set local.driver=qemu
expect_rc 0
vmctl snapshot ghost
expect_error 'instance "ghost" does not exist'
vmctl stop --time 5 ghost
expect_error 'does not exist'

e2e_log PASS
