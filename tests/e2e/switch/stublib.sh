# Shared by the driver-switch tests (sourced after tests/e2e/lib.sh): a
# stand-in driver "stub" with a scope of its own and no instances, so that
# a switch away from qemu needs no second hypervisor. Its helper answers
# hello as a usable driver, answers ping, lists nothing and exits on shutdown.
#
# stub_install [NAME [SCOPE]]: writes vmctl-NAME-helper (default stub, in
# the scope NAME) to $VMCTL_HELPER_PATH (set and exported here, before the
# broker starts); a stand-in of scope qemu is another driver of qemu's
# scope, as libvirt is. qemu_pid_of NAME: the QEMU of instance NAME.

PY=/usr/bin/python3
export VMCTL_HELPER_PATH=$E2E_TMP/helpers

stub_install() {
	local name=${1:-stub} scope=${2:-${1:-stub}}
	$PY -c 'import msgpack' 2>/dev/null || fail "needs $PY with msgpack (python3-msgpack)"
	mkdir -p "$VMCTL_HELPER_PATH"
	cat >"$VMCTL_HELPER_PATH/vmctl-$name-helper" <<PYEOF
#!$PY
import os, sys, msgpack
if sys.argv[1:] == ['--describe']:
    print('driver $name\nscope $scope\nversion 0.1\nfeatures')
    sys.exit(0)
out = sys.stdout.buffer
def send(msg):
    out.write(msgpack.packb(msg))
    out.flush()
unp = msgpack.Unpacker(raw=False)
while True:
    data = os.read(0, 65536)
    if not data:
        break
    unp.feed(data)
    for msg in unp:
        if msg[0] != 0:
            continue
        _, mid, method, params = msg
        if method == 'hello':
            send([1, mid, None, dict(version=1, driver='$name', scope='$scope',
                                     helper_version='0.1', usable=True, why='',
                                     features=[])])
        elif method == 'ping':
            send([1, mid, None, {}])
        elif method == 'instances.list':
            send([1, mid, None, dict(instances=[])])
        elif method == 'shutdown':
            send([1, mid, None, {}])
            sys.exit(0)
        else:
            send([1, mid, [4, 'unsupported'], None])
PYEOF
	chmod 755 "$VMCTL_HELPER_PATH/vmctl-$name-helper"
}

qemu_pid_of() {
	local p
	for p in $(qemu_pids); do
		grep -qzF "$VMCTL_DATA/scopes/qemu/instances/$1/" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}

# BOOT := the boot id of instance NAME (the same after a resume, new after a boot).
BOOT=
boot_id() {
	vmctl exec "$1" -- cat /proc/sys/kernel/random/boot_id
	expect_rc 0
	BOOT=$OUT
	[ -n "$BOOT" ] || fail "no boot id from $1"
}
