#!/usr/bin/env bash
# vmctl wait-ready: with no broker and VMCTL_NO_AUTOSTART it gives up at
# its --timeout (exit 5), and returns once a broker appears; it starts the
# broker itself otherwise; it returns only once the active driver's helper
# is ready (a helper slow to start is waited for); a helper that refuses
# the handshake is an error at once, with the reason.
. "$(dirname "$0")/lib.sh"

broker_gone() { [ -z "$(broker_pids)" ]; }

VMCTLD=${VMCTL_BIN_DIR}/vmctld
REAL_HELPER=$(cd "$VMCTL_BIN_DIR/.." && pwd)/libexec/vmctl/vmctl-qemu-helper
[ -x "$REAL_HELPER" ] || fail "no helper at $REAL_HELPER"

# No broker, none to be started.
VMCTL_NO_AUTOSTART=1 run "$VMCTL" wait-ready --timeout 2
expect_rc 5
expect_error "no broker answered within 2 seconds"
[ -z "$(broker_pids)" ] || fail "wait-ready started a broker despite VMCTL_NO_AUTOSTART"

# A helper that takes seconds to answer its handshake.
mkdir -p "$E2E_TMP/helpers"
cat >"$E2E_TMP/helpers/vmctl-qemu-helper" <<EOF2
#!/bin/sh
[ "\$1" = --describe ] || sleep 3
exec '$REAL_HELPER' "\$@"
EOF2
chmod 755 "$E2E_TMP/helpers/vmctl-qemu-helper"
export VMCTL_HELPER_PATH=$E2E_TMP/helpers

# A broker that appears while wait-ready waits for one.
( sleep 2; "$VMCTLD" --detach ) >/dev/null 2>&1 &
VMCTL_NO_AUTOSTART=1 run "$VMCTL" wait-ready --timeout 120
expect_rc 0
wait
vmctl version --format json
expect_rc 0
expect_out '"helper_state": *"ready"'

# Autostart: wait-ready starts the broker and waits for the slow helper.
kill -TERM $(broker_pids)
wait_until 30 broker_gone || fail "the broker did not stop"
vmctl wait-ready --timeout 120
expect_rc 0
vmctl version --format json
expect_rc 0
expect_out '"helper_state": *"ready"'

# A helper that refuses the handshake: an error now, not a wait.
cat >"$E2E_TMP/helpers/vmctl-qemu-helper" <<'EOF2'
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
            os.write(1, msgpack.packb([1, msg[1], [7, 'speaks only protocol 99'], None]))
EOF2
kill -TERM $(broker_pids)
wait_until 30 broker_gone || fail "the broker did not stop"
vmctl wait-ready --timeout 600
expect_rc 1
expect_error "the qemu driver cannot be used: .*speaks only protocol 99"

e2e_log PASS
