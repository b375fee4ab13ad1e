#!/usr/bin/python3
"""Talk to a vmctl driver helper the way vmctld does, for testing by hand.

Spawns the helper on pipes, sends `hello`, then each request given on the
command line in order, and prints every answer and notification as JSON.
The helper's own log (stderr) passes through to stderr.

  helper-client.py [options] REQUEST...

A REQUEST is METHOD or METHOD=JSON_PARAMS, e.g.
  instance.state  'instance.stop={"force": true}'  sleep=3
`sleep=SECONDS` waits while still printing notifications. Requests whose
method starts with "instance." or "snapshot." get the instance map of
--instance under the key "instance" unless their params have one.

Exit status: 0 if every request succeeded, 1 if one failed, 2 on bad usage,
3 if the helper broke the protocol or died.
"""
import argparse
import glob
import json
import os
import select
import signal
import subprocess
import sys
import time

import msgpack


def default_helper():
    env = os.environ.get("VMCTL_QEMU_HELPER")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = sorted(glob.glob(os.path.join(root, "build*/libexec/vmctl/vmctl-qemu-helper")),
                   key=os.path.getmtime)
    return found[-1] if found else "vmctl-qemu-helper"


def show(tag, obj):
    print(tag, json.dumps(obj, default=lambda b: b.hex() if isinstance(b, bytes) else str(b)),
          flush=True)


class Helper:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.failed = False
        self.last_error = None  # [code, message] of the last failed call
        self.notifications = []  # [method, params] in arrival order

    def _read_messages(self, timeout):
        """Yield messages arriving within timeout seconds (None: block for one read)."""
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(fd, 65536)
        if not data:
            raise EOFError("the helper closed its end of the pipe")
        self.unpacker.feed(data)
        return list(self.unpacker)

    def _handle_other(self, msg):
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == 2:
            self.notifications.append([msg[1], msg[2]])
            show("!! " + str(msg[1]), msg[2])
        else:
            show("?? unexpected", msg)

    def call(self, method, params, timeout):
        """The result, or None with last_error set to [code, message]."""
        self.last_error = None
        self.msgid += 1
        msgid = self.msgid
        show("=> " + method, params)
        self.proc.stdin.write(msgpack.packb([0, msgid, method, params], use_bin_type=True))
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                show("<= " + method, {"client_timeout": timeout})
                self.last_error = [0, "no answer within %s s" % timeout]
                self.failed = True
                return None
            for msg in self._read_messages(left):
                if isinstance(msg, list) and len(msg) == 4 and msg[0] == 1 and msg[1] == msgid:
                    if msg[2] is not None:
                        show("<= " + method + " ERROR", msg[2])
                        self.last_error = msg[2]
                        self.failed = True
                        return None
                    show("<= " + method, msg[3])
                    return msg[3]
                self._handle_other(msg)

    def idle(self, seconds):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for msg in self._read_messages(left):
                self._handle_other(msg)


def parse_request(text):
    method, sep, params = text.partition("=")
    if not sep:
        return method, {}
    try:
        value = json.loads(params)
    except json.JSONDecodeError as e:
        raise SystemExit(f"helper-client: bad JSON for {method}: {e}")
    return method, value


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--helper", default=default_helper(), help="helper executable")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting passed in hello (e.g. local.qemu.accel=tcg)")
    ap.add_argument("--scope-dir", default=os.environ.get("TMPDIR", "/tmp"))
    ap.add_argument("--instance", metavar="FILE", help="JSON file with the instance map")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for each answer")
    ap.add_argument("--kill-helper", action="store_true",
                    help="SIGKILL the helper at the end instead of closing its pipe")
    ap.add_argument("requests", nargs="*")
    args = ap.parse_args()

    settings = {}
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--set wants KEY=VALUE, not {kv!r}")
        settings[key] = value
    instance = None
    if args.instance:
        with open(args.instance) as f:
            instance = json.load(f)
    requests = [parse_request(r) for r in args.requests]

    helper = Helper([args.helper])
    status = 0
    try:
        hello = helper.call("hello", {"versions": [1], "scope_dir": args.scope_dir,
                                      "settings": settings}, args.timeout)
        if hello is None:
            return 3
        for method, params in requests:
            if method == "sleep":
                helper.idle(float(params))
                continue
            if (instance is not None and isinstance(params, dict) and "instance" not in params
                    and method.split(".")[0] in ("instance", "snapshot")):
                params = dict(params, instance=instance)
            helper.call(method, params, args.timeout)
        status = 1 if helper.failed else 0
    except (EOFError, BrokenPipeError) as e:
        print(f"helper-client: {e}", file=sys.stderr)
        status = 3
    finally:
        if args.kill_helper:
            helper.proc.send_signal(signal.SIGKILL)
        else:
            helper.proc.stdin.close()
        code = helper.proc.wait()
        if code not in (0, -signal.SIGKILL) and status == 0:
            print(f"helper-client: the helper exited with {code}", file=sys.stderr)
            status = 3
    return status


if __name__ == "__main__":
    sys.exit(main())
