#!/usr/bin/python3
"""The libvirt helper answers while qemu-img runs: its loop never waits for a
child. A fake qemu-img (first in PATH) holds instance.create until the test
opens a gate; a ping sent after the create must be answered before it.
Runs on libvirt's in-process test driver (test:///default): no daemon, no
root, no VM.

  loop_not_blocked.py --helper PATH
"""
import argparse
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import msgpack

FAKE_QEMU_IMG = """#!/bin/sh
# Wait for the test's gate, then answer as qemu-img would.
while [ ! -e "$LVT_GATE" ]; do sleep 0.05; done
echo "$*" >> "$LVT_GATE.calls"
case "$1" in
info) echo '{"virtual-size": 1073741824, "format": "qcow2"}' ;;
create) n=$#; eval "overlay=\\${$((n - 1))}"; : > "$overlay" ;;
esac
"""


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


class Pipe:
    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.answers = {}  # msgid: [error, result], in the order they were answered

    def send(self, msgid, method, params):
        self.proc.stdin.write(msgpack.packb([0, msgid, method, params]))
        self.proc.stdin.flush()

    def wait(self, msgid, timeout):
        """The [error, result] of msgid, or None once timeout passed."""
        deadline = time.time() + timeout
        while True:
            for msg in self.unpacker:
                if msg[0] == 1:
                    self.answers[msg[1]] = [msg[2], msg[3]]
            if msgid in self.answers:
                return self.answers[msgid]
            left = deadline - time.time()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    fail("the helper closed its pipe")
                self.unpacker.feed(data)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helper", required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lvh-noblock-")
    helper = None
    try:
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        fake = os.path.join(bindir, "qemu-img")
        with open(fake, "w") as f:
            f.write(FAKE_QEMU_IMG)
        os.chmod(fake, 0o755)
        gate = os.path.join(tmp, "gate")
        scope = os.path.join(tmp, "scope")
        idir = os.path.join(scope, "instances", "nb")
        os.makedirs(idir)
        base = os.path.join(tmp, "base.qcow2")
        open(base, "w").close()
        env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
                   LVT_GATE=gate)
        helper = Pipe([args.helper], env)
        helper.send(1, "hello", {"versions": [1], "scope_dir": scope,
                                 "settings": {"local.libvirt.uri": "test:///default"}})
        hello = helper.wait(1, 30)
        if not hello or hello[0] is not None or not hello[1]["usable"]:
            fail(f"hello: {hello}")
        inst = {"name": "nb", "dir": idir, "cpus": 1, "memory": 512 << 20, "disk": 0,
                "mac": "52:54:00:00:00:01", "image": {"disk": base, "format": "qcow2"}}
        helper.send(2, "instance.create", {"instance": inst})
        helper.send(3, "ping", {})
        if helper.wait(3, 20) is None:
            fail("no answer to ping while qemu-img runs: the loop waits for the child")
        if 2 in helper.answers:
            fail(f"instance.create answered before qemu-img was let through: {helper.answers[2]}")
        print("ok: ping answered while qemu-img of instance.create runs", flush=True)
        open(gate, "w").close()
        created = helper.wait(2, 60)
        if created is None:
            fail("instance.create never answered")
        with open(gate + ".calls") as f:
            calls = f.read().split("\n")
        if not calls[0].startswith("info") or not calls[1].startswith("create"):
            fail(f"qemu-img calls: {calls}")
        if not os.path.exists(os.path.join(idir, "disk.qcow2")):
            fail("the overlay was not created")
        print(f"ok: then create ran qemu-img info and create and answered {created}", flush=True)
        print("PASS", flush=True)
    finally:
        # Let a fake qemu-img still waiting go (a helper that blocks on it
        # would leave it behind), then stop the helper.
        open(os.path.join(tmp, "gate"), "a").close()
        if helper:
            helper.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
