#!/usr/bin/env bash
# A helper that floods its stderr and its log notifications with 2 KB lines
# leaves a log of a few hundred KB, not hundreds of MB: lines are cut at
# 1 KiB, repeated lines are written once and counted, and past the rate
# limit lines are dropped and counted. Needs no VM: the helper is a fake.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
$PY -c 'import msgpack' 2>/dev/null || fail "needs $PY with msgpack (python3-msgpack)"

export VMCTL_HELPER_PATH=$E2E_TMP/helpers FAKE_DIR=$E2E_TMP
mkdir -p "$VMCTL_HELPER_PATH"
cat >"$VMCTL_HELPER_PATH/vmctl-qemu-helper" <<PYEOF
#!$PY
# Answers hello, then floods: 5,000 equal 2 KB stderr lines, 20,000
# different ones, 2,000 log notifications of 3 KB; then serves requests.
import os, sys, msgpack
if sys.argv[1:] == ['--describe']:
    print('driver qemu\nscope qemu\nversion 9.9\nfeatures suspend')
    sys.exit(0)
out, err = sys.stdout.buffer, sys.stderr.buffer
def send(msg):
    out.write(msgpack.packb(msg))
    out.flush()
unp = msgpack.Unpacker(raw=False)
flooded = False
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
            send([1, mid, None, dict(version=1, driver='qemu', scope='qemu',
                                     helper_version='9.9', usable=True, why='',
                                     features=['suspend'])])
        elif method == 'instances.list':
            send([1, mid, None, dict(instances=[])])
        elif method == 'shutdown':
            send([1, mid, None, {}])
            sys.exit(0)
        else:
            send([1, mid, None, {}])
        if method == 'hello' and not flooded:
            flooded = True
            same = b'E' * 2048 + b'\n'
            for i in range(5000):
                err.write(same)
            for i in range(20000):
                err.write(b'%06d ' % i + b'D' * 2041 + b'\n')
            err.flush()
            for i in range(2000):
                send([2, 'log', dict(level='info', text='%06d ' % i + 'N' * 3000)])
            open(os.path.join(os.environ['FAKE_DIR'], 'flood-done'), 'w').close()
PYEOF
chmod 755 "$VMCTL_HELPER_PATH/vmctl-qemu-helper"

log=$VMCTL_DATA/vmctld.log
vmctl list
expect_rc 0
wait_until 60 test -e "$E2E_TMP/flood-done" || fail "the fake helper did not finish its flood"
vmctl list
expect_rc 0
# What was dropped is counted once the rate limit's window (10 s) ends.
wait_until 30 grep -q 'lines of helper stderr dropped' "$log" ||
	fail "the log does not say that helper stderr lines were dropped"
wait_until 30 grep -q 'log notifications of the qemu helper dropped' "$log" ||
	fail "the log does not say that log notifications were dropped"

size=$(stat -c %s "$log")
e2e_log "vmctld.log: $size bytes, $(wc -l <"$log") lines"
[ "$size" -lt $((1024 * 1024)) ] || fail "vmctld.log grew to $size bytes"
grep -q 'the last line repeated [0-9]* times' "$log" ||
	fail "the equal lines were not collapsed into a repeat count"
grep -q 'E\{1024\} … \[1024 more bytes cut\]' "$log" || fail "long lines were not cut at 1 KiB"
grep -q 'N\{1017\} … \[1983 more bytes cut\]' "$log" ||
	fail "long log notifications were not cut at 1 KiB"
awk 'length($0) > 1200 { bad = 1 } END { exit bad }' "$log" || fail "a log line is longer than 1200 bytes"

e2e_log PASS
