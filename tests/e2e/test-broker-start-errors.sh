#!/usr/bin/env bash
# What stops the broker from working reaches the user as the broker's own
# words: a settings or registry file it cannot load (file, line, column)
# when vmctl starts it, and a helper that refused the handshake (at once, in
# list and start, and in version).
. "$(dirname "$0")/lib.sh"

# The broker started on demand, and nothing of it left running.
expect_no_broker() {
	[ -z "$(broker_pids)" ] || fail "a broker is running although it could not start"
}

# A settings file that is not valid YAML.
printf 'local.driver: qemu\nlocal.image.refresh: [6h\n' >"$VMCTL_DATA/settings.yaml"
vmctl list
expect_rc 3
expect_err "could not start: $VMCTL_DATA/settings\\.yaml: line [0-9]+, column [0-9]+"
printf '%s\n' "$ERR" | grep -q 'No such file or directory' &&
	fail "the message blames the missing socket"
expect_no_broker

# A settings file with a value the broker refuses: no helper can have that
# name.
printf 'local.driver: qemu/kvm\n' >"$VMCTL_DATA/settings.yaml"
vmctl version
expect_rc 3
expect_err "settings\\.yaml: line 1, column [0-9]+: invalid value \"qemu/kvm\" for local\\.driver: a driver name"
expect_no_broker

# A driver no helper is installed for: which drivers exist is up to the
# helpers, so the broker starts and says what is missing.
printf 'local.driver: xen\n' >"$VMCTL_DATA/settings.yaml"
vmctl version
expect_rc 0
expect_out "driver +xen \\(helper missing: the xen driver's helper vmctl-xen-helper was not found \\(looked in "
vmctl set local.driver=qemu
expect_rc 0
vmctl version
expect_out "driver +qemu "
# The rest wants a broker started afresh.
kill "$(broker_pids)"
for _ in $(seq 1 50); do [ -z "$(broker_pids)" ] && break; sleep 0.1; done
expect_no_broker
rm "$VMCTL_DATA/settings.yaml"

# A registry that is not a registry.
mkdir -p "$VMCTL_DATA/scopes/qemu"
printf 'instances:\n  - web\n' >"$VMCTL_DATA/scopes/qemu/instances.yaml"
vmctl list
expect_rc 3
expect_err "could not start: $VMCTL_DATA/scopes/qemu/instances\\.yaml: line [0-9]+, column [0-9]+"
expect_no_broker

# A helper that refuses the handshake (here: no protocol version in common).
cat >"$VMCTL_DATA/scopes/qemu/instances.yaml" <<'EOF'
instances:
  web:
    state: stopped
    image: file:///nowhere/disk.qcow2
    image_disk: /nowhere/disk.qcow2
    image_format: qcow2
    mac: "52:54:00:00:00:01"
    created: "2026-11-27T10:00:00Z"
    cpus: 1
    memory: 1073741824
    disk: 5368709120
    deleted: false
EOF
mkdir -p "$VMCTL_DATA/scopes/qemu/instances/web" "$E2E_TMP/helpers"
cat >"$E2E_TMP/helpers/vmctl-qemu-helper" <<'EOF'
#!/usr/bin/python3
import os, sys, msgpack
if sys.argv[1:] == ['--describe']:
    print('driver qemu\nscope qemu\nversion 9.9\nfeatures ')
    sys.exit(0)
unp = msgpack.Unpacker(raw=False)
while True:
    data = os.read(0, 65536)
    if not data:
        break
    unp.feed(data)
    for msg in unp:
        if msg[0] == 0 and msg[2] == 'hello':
            # [1, msgid, [code, message], nil]: 7 is "unavailable"
            os.write(1, msgpack.packb([1, msg[1], [7, 'speaks only protocol 99'], None]))
EOF
chmod 755 "$E2E_TMP/helpers/vmctl-qemu-helper"
export VMCTL_HELPER_PATH=$E2E_TMP/helpers

vmctl list
expect_rc 0
expect_out '^web +Unknown'
expect_err 'refused the handshake: speaks only protocol 99'
# Said at once, every time: the helper is not restarted in a loop for
# requests to wait on.
for _ in 1 2 3; do
	vmctl list
	expect_err 'refused the handshake: speaks only protocol 99'
	printf '%s\n' "$ERR" | grep -q 'did not answer' && fail "list waited for the helper"
done
vmctl start web
expect_fail
expect_err 'refused the handshake: speaks only protocol 99'
vmctl version
expect_rc 0
expect_out "driver +qemu \\(helper unusable: .*refused the handshake: speaks only protocol 99"
starts=$(grep -c "started $E2E_TMP/helpers/vmctl-qemu-helper" "$VMCTL_DATA/vmctld.log")
[ "$starts" -eq 1 ] || fail "the refusing helper was started $starts times"

# Once the file is replaced by a helper that works, it is used again.
cat >"$E2E_TMP/vmctl-qemu-helper.new" <<'EOF'
#!/usr/bin/python3
import os, sys, msgpack
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
        res = {}
        if method == 'hello':
            res = dict(version=1, driver='qemu', scope='qemu', helper_version='9.9',
                       usable=True, why='', features=[])
        elif method == 'instances.list':
            res = dict(instances=[dict(name=i['name'], state='stopped')
                                  for i in params['instances']])
        os.write(1, msgpack.packb([1, mid, None, res]))
        if method == 'shutdown':
            sys.exit(0)
EOF
chmod 755 "$E2E_TMP/vmctl-qemu-helper.new"
mv "$E2E_TMP/vmctl-qemu-helper.new" "$E2E_TMP/helpers/vmctl-qemu-helper"
vmctl list
expect_rc 0
expect_out '^web +Stopped'
vmctl version
expect_out 'driver +qemu \(helper 9\.9\)'

e2e_log PASS
