#!/usr/bin/env bash
# Every method of the broker's request table (core/vmctld/client.c), sent
# the way a hostile or buggy client would: params empty, with nil values,
# and each param the method reads with a value of every wrong type. Each
# request gets a clean invalid-argument error (a code and a printable
# sentence, never stray bytes), and the broker lives on unchanged. Params
# that are not a map break the framing (docs/protocol.md): that client is
# dropped, and the broker serves the next one.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
# Debian's python3, where python3-msgpack is (tools/install-deps.sh).
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c 'import msgpack' 2>/dev/null || fail "needs $PYTHON with msgpack (python3-msgpack)"

# One instance, recorded by hand with its folder: nothing boots.
scope=$VMCTL_DATA/scopes/qemu
mkdir -p "$scope/instances/web"
# No mirror that answers: a launch with default params must fail fast.
# drivers probes every helper: libvirt's in-process test driver and an LXD
# socket where nothing listens keep it off the host's daemons.
printf 'local.driver: qemu\nlocal.image.mirror: file://%s/no-mirror\nlocal.libvirt.uri: test:///default\nlocal.lxd.socket: %s/no-lxd.sock\n' \
	"$E2E_TMP" "$E2E_TMP" >"$VMCTL_DATA/settings.yaml"
cat >"$scope/instances.yaml" <<EOF
instances:
  web:
    state: stopped
    image: file://$FAST_IMAGE
    image_disk: $FAST_IMAGE
    image_format: qcow2
    mac: 52:54:00:00:00:01
    cpus: 1
    memory: 1073741824
    disk: 5368709120
    deleted: false
EOF
cp "$scope/instances.yaml" "$E2E_TMP/instances.before"

vmctl list
expect_rc 0
expect_out '^web +Stopped'
broker=$(broker_pids)
[ -n "$broker" ] || fail "no broker runs"

cat >"$E2E_TMP/fuzz.py" <<'EOF'
import re, socket, sys
import msgpack

src = open(sys.argv[1]).read()
table = src[src.index("static const struct method methods[]"):]
table = table[:table.index("\n};")]
macros = dict(re.findall(r'#define (\w+) "([^"]*)"', src))
methods = {}
for name, spec in re.findall(r'\{"(\w+)",\s*\w+,\s*(?:true|false),\s*((?:(?:"[^"]*"|\w+)\s*)+)\}', table):
    text = "".join(macros[m] if m else s for s, m in re.findall(r'"([^"]*)"|(\w+)', spec))
    methods[name] = dict(kv.split(":") for kv in text.split())
assert len(methods) >= 20, "could not read the request table: %r" % sorted(methods)

# Methods that act on something named: without params they must refuse.
NEEDS_TARGET = {"info", "start", "stop", "restart", "suspend", "delete", "recover", "ssh_info",
                "get", "set", "snapshot", "restore", "snapshot_delete", "snapshots", "clone",
                "mount", "umount", "exec"}
WRONG = {
    "str": [0, -1, 2**64 - 1, 1.5, True, [], {}, b"bin", ["web"]],
    "int": ["5", 1.5, True, [], {}, b"5"],
    "bool": [0, 1, "true", 1.5, [], {}, b"1"],
    "size": [-1, 1.5, True, [], {}, b"1G"],
    "list": ["web", 0, 1.5, True, {}, b"web"],
    "bin": [0, -1, 1.5, True, [], {}],
}
INVALID_ARGUMENT = 1

msgid = 0
failures = []
sent = 0

def connect():
    global sock, unpacker
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(sys.argv[2])
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)

connect()

def call(method, params):
    global msgid
    msgid += 1
    sock.sendall(msgpack.packb([0, msgid, method, params], use_bin_type=True))
    while True:
        for msg in unpacker:
            if msg[0] == 1 and msg[1] == msgid:
                return msg[2], msg[3]
        data = sock.recv(65536)
        if not data:
            return "closed", None
        unpacker.feed(data)

def clean(message):
    try:
        text = message.decode("utf-8")
    except (AttributeError, UnicodeDecodeError):
        return False
    return text != "" and all(c >= " " and c != "\x7f" for c in text)

def expect(method, params, refused, mentions=None):
    global sent
    sent += 1
    error, _ = call(method, params)
    what = "%s %r" % (method, params)
    if error == "closed":
        failures.append("%s: the broker closed the connection" % what)
        connect()
        return
    if error is None:
        if refused:
            failures.append("%s: accepted" % what)
        return
    if not (isinstance(error, list) and len(error) == 2 and isinstance(error[0], int)
            and clean(error[1])):
        failures.append("%s: not a clean error: %r" % (what, error))
        return
    text = error[1].decode()
    if refused and error[0] != INVALID_ARGUMENT:
        failures.append("%s: error %d, not invalid-argument: %s" % (what, error[0], text))
    elif mentions and mentions not in text:
        failures.append("%s: the message does not name %s: %s" % (what, mentions, text))

for method, keys in sorted(methods.items()):
    # What a request needs to get past the name checks, so that a wrongly
    # typed param is what it is refused for.
    base = {}
    if "names" in keys:
        base["names"] = ["web"]
    if "name" in keys:
        base["name"] = "web"
    expect(method, {}, method in NEEDS_TARGET)
    for params in (None, [], 42, "web", [None], b"x"):
        sent += 1
        if call(method, params)[0] != "closed":
            failures.append("%s %r: answered, not dropped" % (method, params))
        connect()
    expect(method, {42: "web"}, True)
    for key, kind in keys.items():
        # nil is absent: alone it is {}; with the base it would be a real request.
        expect(method, {key: None}, method in NEEDS_TARGET)
        for value in WRONG[kind]:
            expect(method, dict(base, **{key: value}), True, mentions=key)
    if "names" in keys:
        for element in (42, None, [], {}, b"web", "x" * 300):
            expect(method, {"names": [element]}, True)

# The exact requests of the report.
for params in ({}, {"name": None}):
    error, _ = call("ssh_info", params)
    if error != [INVALID_ARGUMENT, b"ssh_info needs an instance name"]:
        failures.append("ssh_info %r: %r" % (params, error))
    sent += 1

print("%d requests to %d methods, %d failures" % (sent, len(methods), len(failures)))
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
EOF
run "$PYTHON" "$E2E_TMP/fuzz.py" "$SRC/core/vmctld/client.c" "$VMCTL_DATA/vmctld.sock"
expect_rc 0
expect_out ', 0 failures$'

# The broker lives on, unchanged.
alive "$broker" || fail "the broker died"
[ "$(broker_pids)" = "$broker" ] || fail "another broker runs now: $(broker_pids)"
vmctl list
expect_rc 0
expect_out '^web +Stopped'
cmp -s "$scope/instances.yaml" "$E2E_TMP/instances.before" || fail "instances.yaml changed"
e2e_log "PASS"
