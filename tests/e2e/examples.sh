# Drives an example helper whose instances are folders (examples/) through
# vmctl: launch (readiness through the helper's instance.exec, since the
# toy drivers have no sshd), list, exec, stop, start, delete. Sourced by
# test-example-*.sh after lib.sh, with the helper's folder and driver name.

# example_drive DRIVER HELPER_DIR
example_drive() {
	local driver=$1 dir=$2 folder
	[ -x "$dir/vmctl-$driver-helper" ] || fail "$dir/vmctl-$driver-helper is not built"
	export VMCTL_HELPER_PATH=$dir
	# No daemon of the host's is touched (see test-drivers-list.sh).
	vmctl set local.libvirt.uri=test:///default
	expect_rc 0
	vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
	expect_rc 0
	vmctl set local.driver="$driver"
	expect_rc 0
	vmctl drivers --format csv
	expect_out "^$driver,yes,yes,"

	# No sshd: the port refuses, and after 30 s the broker asks through exec.
	launch_fast box1
	expect_rc 0
	expect_state box1 Running
	folder=$VMCTL_DATA/scopes/$driver/instances/box1
	[ "$(cat "$folder/toy-state")" = running ] || fail "$folder/toy-state is not 'running'"
	grep -q 'box1 is ready through the driver.s exec' "$VMCTL_DATA/vmctld.log" ||
		fail "the broker's log does not say box1 was ready through exec"

	vmctl exec box1 -- sh -c 'echo hello from $(pwd)'
	expect_rc 0
	expect_out "^hello from $folder\$"

	vmctl stop box1
	expect_rc 0
	expect_state box1 Stopped
	[ "$(cat "$folder/toy-state")" = stopped ] || fail "$folder/toy-state is not 'stopped'"

	# What the driver lacks is refused up front, naming it.
	vmctl suspend box1
	expect_error "suspend.* not supported by the $driver driver"

	vmctl delete --purge box1
	expect_rc 0
	expect_not_listed box1
	[ ! -e "$folder" ] || fail "$folder is still there after delete --purge"

	vmctl set local.driver=qemu
	expect_rc 0
}
