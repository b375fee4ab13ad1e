#!/usr/bin/env bash
# vmctl drivers: one row per driver (the seed's five, then the other helpers
# found), with the helper's path or "not found", whether it can run here and
# why not, which one is active, and the scope, version and features its
# helper reports. Needs no VM: the helpers are asked hello and shut down.
. "$(dirname "$0")/lib.sh"

# No daemon of the host's is touched: libvirt's test driver runs in the
# helper's own process, and LXD's socket is a path where nothing listens.
vmctl set local.libvirt.uri=test:///default
expect_rc 0
vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
expect_rc 0

vmctl drivers
expect_rc 0
expect_out '^Driver +Active +Usable +Scope +Version +Mounts +Networks +Snapshots +Clone +Suspend +Helper$'
expect_out '^qemu +yes +yes +qemu +[0-9.]+ +yes +yes +yes +yes +yes +/.*/vmctl-qemu-helper$'
expect_out '^libvirt +no +yes +qemu +[0-9.]+ +no +no +no +no +yes +/.*/vmctl-libvirt-helper$'
expect_out '^lxd +no +no +lxd +[0-9.]+ +yes +yes +no +no +no +/.*/vmctl-lxd-helper$'
expect_out '^hyperv +no +no +hyperv +[0-9.]+ +yes +yes +yes +yes +yes +/.*/vmctl-hyperv-helper$'
expect_out '^virtualbox +no +no +virtualbox +[0-9.]+ +no +yes +yes +yes +yes +/.*/vmctl-vbox-helper$'
# Why Hyper-V cannot be used here: this is not Windows.
expect_out '^hyperv: the hyperv driver cannot run on this host: Hyper-V needs Windows \(10/11 Pro, Enterprise or Server\)$'
# The reason LXD cannot be used, from its helper's hello.
expect_out "^lxd: the lxd driver cannot run on this host: LXD socket $E2E_TMP/no-lxd.sock: .*is lxd running\\?$"
# This host has no VirtualBox: its helper says so.
expect_out '^virtualbox: the virtualbox driver cannot run on this host: VBoxManage not found '
[ "$(printf '%s\n' "$OUT" | awk 'NR > 1 && NF >= 11 && $2 ~ /^(yes|no)$/' | wc -l)" -eq 5 ] || fail "expected 5 rows"

# Asked and shut down: no helper but the active one is left running.
for name in vmctl-libvirt-h vmctl-lxd-helpe vmctl-hyperv-he vmctl-vbox-help; do
	[ -z "$(e2e_pids_named "$name")" ] || fail "$name is still running after vmctl drivers"
done
[ -n "$(helper_pids)" ] || fail "the active qemu helper is not running"

# Every key of every row in json; csv has the reasons too.
vmctl drivers --format json
expect_rc 0
printf '%s\n' "$OUT" | python3 -c '
import json, sys
rows = {r["driver"]: r for r in json.load(sys.stdin)["drivers"]}
assert list(rows) == ["qemu", "libvirt", "lxd", "hyperv", "virtualbox"], list(rows)
keys = {"driver", "helper", "usable", "why", "active", "scope", "version", "features",
        "native_mounts", "extra_networks", "snapshots", "clone", "suspend"}
for r in rows.values():
    assert set(r) == keys, r
assert rows["qemu"]["active"] and rows["qemu"]["usable"]
assert rows["qemu"]["features"] == ["native_mounts", "extra_networks", "snapshots", "clone", "suspend"]
assert rows["libvirt"]["features"] == ["suspend"] and rows["libvirt"]["scope"] == "qemu"
assert not rows["lxd"]["usable"] and "no-lxd.sock" in rows["lxd"]["why"]
assert rows["hyperv"]["helper"].endswith("/vmctl-hyperv-helper") and not rows["hyperv"]["usable"]
assert rows["hyperv"]["features"] == ["native_mounts", "extra_networks", "snapshots", "clone", "suspend"]
assert "Hyper-V needs Windows (10/11 Pro, Enterprise or Server)" in rows["hyperv"]["why"]
' || fail "vmctl drivers --format json is not as expected"
vmctl drivers --format csv
expect_rc 0
expect_out '^Driver,Active,Usable,Why,Scope,Version,Mounts,Networks,Snapshots,Clone,Suspend,Helper$'
expect_out '^lxd,no,no,the lxd driver cannot run on this host: LXD socket '
vmctl drivers --format yaml
expect_rc 0
expect_out '^- driver: qemu$|^  - driver: qemu$'

vmctl drivers --format xml
expect_rc 2
expect_err 'format'
vmctl drivers extra
expect_rc 2

vmctl help drivers
expect_rc 0
expect_out 'Usage: vmctl drivers'
e2e_log "PASS"
