#!/usr/bin/env bash
# A damaged instances.yaml loses nothing: a file cut inside a record is
# refused (file, line and column in the broker's log) and never saved over;
# a file cut between records loads, and the folder of each record it lost is
# reported by vmctl list and rebuilt by vmctl recover.
. "$(dirname "$0")/lib.sh"

scope=$VMCTL_DATA/scopes/qemu
registry=$scope/instances.yaml

# Two stopped instances, recorded by hand, each with the disk overlay a
# launch would have made: nothing boots.
printf 'local.driver: qemu\n' >"$VMCTL_DATA/settings.yaml"
for name in web db; do
	mkdir -p "$scope/instances/$name"
	qemu-img create -q -f qcow2 -F qcow2 -b "$FAST_IMAGE" "$scope/instances/$name/disk.qcow2" 6G ||
		fail "qemu-img create failed"
done
record() { # NAME MAC
	cat <<EOF
  $1:
    state: stopped
    image: file://$FAST_IMAGE
    image_disk: $FAST_IMAGE
    image_format: qcow2
    mac: $2
    cpus: 1
    memory: 1073741824
    disk: 6442450944
    deleted: false
EOF
}
{
	echo "instances:"
	record web 52:54:00:00:00:01
	record db 52:54:00:00:00:02
} >"$registry"

vmctl list
expect_rc 0
expect_out '^web +Stopped'
expect_out '^db +Stopped'

no_broker_runs() { [ -z "$(broker_pids)" ]; }
stop_broker() {
	local pids
	pids=$(broker_pids)
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids
	wait_until 30 no_broker_runs || fail "the broker did not stop"
}
stop_broker
whole=$E2E_TMP/instances.whole
cp "$registry" "$whole"

# Cut at 200 bytes, inside web: refused, and the file is kept as it is.
head -c 200 "$whole" >"$registry"
cp "$registry" "$E2E_TMP/instances.cut"
vmctl set local.web.cpus=2
expect_fail
cmp -s "$registry" "$E2E_TMP/instances.cut" || fail "instances.yaml changed after a refused start"
grep -E "ERROR: $registry: line [0-9]+, column [0-9]+: " "$VMCTL_DATA/vmctld.log" >&2 ||
	fail "the broker's log does not say where instances.yaml is wrong"
vmctl list
expect_fail
cmp -s "$registry" "$E2E_TMP/instances.cut" || fail "instances.yaml changed after a refused list"
no_broker_runs || fail "a broker runs on a registry it could not load"

# A value the broker could not use is refused the same way, naming it.
sed 's/^    mac: 52:54:00:00:00:02$/    mac: zz;rm -rf \//' "$whole" >"$registry"
cp "$registry" "$E2E_TMP/instances.badmac"
vmctl list
expect_fail
cmp -s "$registry" "$E2E_TMP/instances.badmac" || fail "instances.yaml changed"
grep -F "column 10: mac of instance \"db\" must be a unicast MAC address like 52:54:00:12:34:56, not \"zz;rm -rf /\"" \
	"$VMCTL_DATA/vmctld.log" >&2 || fail "the broker's log does not name the bad MAC"
no_broker_runs || fail "a broker runs on a registry it could not load"

# Cut just before db: web loads; db's folder is reported, and recovered.
sed '/^  db:$/,$d' "$whole" >"$registry"
vmctl list
expect_rc 0
expect_out '^web +Stopped'
expect_no_out '^db '
expect_err "the folder $scope/instances/db has no record in $registry"
expect_err 'vmctl recover db rebuilds one from the folder'
vmctl recover db
expect_rc 0
expect_err 'rebuilt the record of db from its folder'
vmctl list
expect_rc 0
expect_out '^db +Stopped'
[ -z "$ERR" ] || fail "vmctl list still warns: $ERR"
vmctl info db
expect_rc 0
expect_out "^Image: +file://$FAST_IMAGE"
expect_out '^Disk: +6\.0GiB'
# The record is a whole one: the broker loads it again after a restart.
stop_broker
vmctl list
expect_rc 0
expect_out '^web +Stopped'
expect_out '^db +Stopped'
e2e_log "PASS"
