#!/usr/bin/python3
"""The qemu helper driven over its pipes, as the broker drives it, against
real VMs booted from the test image (tools/build-image.sh, "fast" variant):

create, start, SSH in, kill -9 the helper and find the VM still running from
a new helper, graceful stop, start, suspend and resume keeping guest memory,
refusals on a running VM, forced stop, snapshots, clone, delete.

  e2e_qemu_helper.py --helper BUILD/libexec/vmctl/vmctl-qemu-helper

Environment: VMCTL_TEST_IMAGES (default /var/cache/vmctl-test-images),
E2E_FAST_TIMEOUT seconds to wait for SSH (default 240), E2E_KEEP=1 keeps the
temporary folder. Exit status 0 when every check passed.
"""
import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "..", "..", "tools", "helper-client.py")

spec = importlib.util.spec_from_file_location("helper_client", CLIENT)
helper_client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper_client)

IMAGES = os.environ.get("VMCTL_TEST_IMAGES", "/var/cache/vmctl-test-images")
SSH_TIMEOUT = float(os.environ.get("E2E_FAST_TIMEOUT", "240"))
CALL_TIMEOUT = 300


class Failed(Exception):
    pass


def log(text):
    print(f"[e2e-qemu-helper {time.strftime('%H:%M:%S')}] {text}", flush=True)


def check(cond, what):
    if not cond:
        raise Failed(what)
    log(f"ok: {what}")


class Bench:
    """A scratch scope, an SSH key and a seed, and helpers on pipes."""

    def __init__(self, helper_path):
        self.helper_path = helper_path
        self.tmp = tempfile.mkdtemp(prefix="e2e-qemu-helper.")
        self.scope = os.path.join(self.tmp, "scope")
        self.key = os.path.join(self.tmp, "key")
        self.images = self.pin_images()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        self.helper = None

    def pin_images(self):
        """Private names for the image files: tools/build-image.sh replaces them
        in place, and an overlay whose base changes under it is garbage."""
        folder = os.path.join(self.tmp, "images")
        os.makedirs(folder)
        for f in ("fast.qcow2", "fast.vmlinuz", "fast.initrd", "fast.cmdline"):
            src, dst = os.path.join(IMAGES, f), os.path.join(folder, f)
            try:
                os.link(src, dst)  # same file, kept even when the original is replaced
            except OSError:
                shutil.copyfile(src, dst)
        return folder

    def seed(self, name):
        folder = os.path.join(self.tmp, "seed-" + name)
        os.makedirs(folder)
        with open(self.key + ".pub") as f:
            pub = f.read().strip()
        with open(os.path.join(folder, "user-data"), "w") as f:
            f.write(f"#cloud-config\nssh_authorized_keys:\n  - {pub}\n")
        with open(os.path.join(folder, "meta-data"), "w") as f:
            f.write(f"instance-id: {name}\nlocal-hostname: {name}\n")
        iso = os.path.join(self.tmp, name + "-seed.iso")
        subprocess.run(["genisoimage", "-quiet", "-output", iso, "-volid", "cidata", "-joliet",
                        "-rock", os.path.join(folder, "user-data"),
                        os.path.join(folder, "meta-data")], check=True)
        return iso

    def instance(self, name, mac):
        with open(os.path.join(self.images, "fast.cmdline")) as f:
            cmdline = f.read().strip()
        return {
            "name": name, "dir": os.path.join(self.scope, "instances", name),
            "cpus": 1, "memory": 512 << 20, "disk": 2 << 30, "mac": mac,
            "image": {"disk": os.path.join(self.images, "fast.qcow2"), "format": "qcow2",
                      "kernel": os.path.join(self.images, "fast.vmlinuz"),
                      "initrd": os.path.join(self.images, "fast.initrd"), "cmdline": cmdline},
            "seed": self.seed(name),
        }

    def spawn(self):
        self.helper = helper_client.Helper([self.helper_path])
        hello = self.helper.call("hello", {"versions": [1], "scope_dir": self.scope,
                                           "settings": {"local.qemu.accel": "auto"}}, 30)
        check(hello is not None and hello["usable"], "the helper says it is usable")
        return hello

    def call(self, method, params):
        return self.helper.call(method, params, CALL_TIMEOUT)

    def error_code(self):
        return self.helper.last_error[0] if self.helper.last_error else None

    def close(self):
        if self.helper:
            self.helper.proc.stdin.close()
            code = self.helper.proc.wait(timeout=60)
            check(code == 0, f"the helper exits 0 on EOF (got {code})")
            self.helper = None

    def kill9(self):
        self.helper.proc.send_signal(signal.SIGKILL)
        self.helper.proc.wait()
        self.helper = None

    def ssh(self, inst, command, timeout=SSH_TIMEOUT):
        """Run command in the guest; its stdout, or None if SSH never answered."""
        port = int(open(os.path.join(inst["dir"], "ssh-port")).read())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                ["ssh", "-q", "-i", self.key, "-p", str(port), "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "ConnectTimeout=20", "ubuntu@127.0.0.1", command],
                capture_output=True, text=True, timeout=90)
            if r.returncode == 0:
                return r.stdout
            time.sleep(2)
        return None

    def cleanup(self):
        if self.helper:
            self.helper.proc.kill()
            self.helper.proc.wait()
        # Any VM of this bench that a failed check left behind.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.tmp.encode() + b"/" in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        if os.environ.get("E2E_KEEP") == "1":
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return len(f.read()) > 0
    except OSError:
        return False


def qmp_command(sock_path, command):
    """One QMP command straight to qemu, bypassing the helper."""
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path)
        f = s.makefile("rw")
        f.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}) + "\n")
            f.flush()
            while "return" not in json.loads(f.readline()):
                pass


def virtual_size(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["virtual-size"]


def run(b):
    vm = b.instance("e2e-vm", "52:54:00:e2:e0:01")
    p = {"instance": vm}
    hello = b.spawn()
    check(set(hello["features"]) == {"native_mounts", "extra_networks", "snapshots", "clone",
                                     "suspend"}, "the qemu driver has every feature")

    check(b.call("instance.create", p) == {}, "create answers {}")
    disk = os.path.join(vm["dir"], "disk.qcow2")
    base = virtual_size(vm["image"]["disk"])
    check(virtual_size(disk) == max(vm["disk"], base),
          "the overlay has the requested size, never less than the image")
    check(b.call("instance.create", p) is None and b.error_code() == 3,
          "a second create is already-exists")

    r = b.call("instance.start", p)
    check(r == {"state": "running"}, "start answers running")
    info = b.call("instance.info", p)
    check(info["state"] == "running" and info["ssh_port"] > 0 and info["pid"] > 0
          and info["ipv4"] == ["10.0.2.15"], f"info while running: {info}")
    check((b.ssh(vm, "hostname") or "").strip() == "e2e-vm", "SSH reaches the guest by its port")

    b.kill9()
    check(pid_alive(info["pid"]), "the VM survives kill -9 of its helper")
    b.spawn()
    check(b.call("instance.state", p) == {"state": "running"}, "a new helper reports it running")
    check(b.call("instance.info", p)["pid"] == info["pid"], "and finds the same qemu")

    r = b.call("instance.stop", dict(p, timeout=120))
    check(r == {"state": "stopped"} and not pid_alive(info["pid"]), "graceful stop")
    check(["state", {"name": "e2e-vm", "old": "running", "new": "stopped"}]
          in b.helper.notifications, "the stop is notified running -> stopped")
    check(not os.path.exists(os.path.join(vm["dir"], "qemu.pid")), "no pid file left behind")

    check(b.call("instance.start", p) == {"state": "running"}, "start again")
    check(b.ssh(vm, "echo before-reboot > /dev/shm/mark && echo ok") == "ok\n",
          "a file in guest memory is written")
    old_pid = b.call("instance.info", p)["pid"]
    check(b.call("instance.restart", dict(p, timeout=120)) == {"state": "running"}, "restart")
    check(b.call("instance.info", p)["pid"] != old_pid, "restart runs a new qemu")
    check(b.ssh(vm, "cat /dev/shm/mark 2>/dev/null || echo rebooted") == "rebooted\n",
          "the guest really rebooted (its memory is new)")
    listed = b.call("instances.list", {"instances": [vm, b.instance("e2e-none", "52:54:00:e2:e0:09")]})
    check(listed == {"instances": [
        {"name": "e2e-vm", "state": "running", "ipv4": ["10.0.2.15"]},
        {"name": "e2e-none", "state": "stopped", "ipv4": []}]}, f"instances.list: {listed}")

    check(b.ssh(vm, "echo kept-in-memory > /dev/shm/mark && echo ok") == "ok\n",
          "a file in guest memory is written")
    check(b.call("instance.suspend", p) == {"state": "suspended"}, "suspend")
    check(b.call("instance.state", p) == {"state": "suspended"}
          and os.path.exists(os.path.join(vm["dir"], "suspended")), "state is suspended")
    check(b.call("instance.stop", p) is None and b.error_code() == 11,
          "a graceful stop of a suspended instance is invalid-state")
    check(b.call("instance.start", p) == {"state": "running"}, "start resumes")
    check(b.ssh(vm, "cat /dev/shm/mark") == "kept-in-memory\n", "the guest's memory came back")
    check(not os.path.exists(os.path.join(vm["dir"], "suspended")), "the marker is gone")

    check(b.call("snapshot.create", dict(p, snapshot={"name": "s1"})) is None
          and b.error_code() == 11, "no snapshot of a running instance")
    check(b.call("instance.mount", dict(p, mount={"source": b.tmp, "target": "/m", "tag": "m0"}))
          is None and b.error_code() == 11, "no mount on a running instance")

    # The guest powers itself off (the ACPI button pressed behind the helper's
    # back): the helper notices through the process's exit.
    b.helper.notifications.clear()
    qmp_command(os.path.join(vm["dir"], "qmp.sock"), "system_powerdown")
    stopped = ["state", {"name": "e2e-vm", "old": "running", "new": "stopped"}]
    deadline = time.monotonic() + 120
    while stopped not in b.helper.notifications and time.monotonic() < deadline:
        b.helper.idle(1)
    check(stopped in b.helper.notifications, "a VM that powers itself off is notified as stopped")

    r = b.call("instance.stop", dict(p, force=True))
    check(r == {"state": "stopped"}, "a forced stop of a stopped instance answers stopped")
    tags = subprocess.run(["qemu-img", "snapshot", "-l", disk], capture_output=True,
                          text=True).stdout
    check("vmctl-suspend" not in tags, "the saved state was dropped from the disk after resume")

    check(b.call("snapshot.create", dict(p, snapshot={"name": "s1", "comment": "c"})) == {},
          "snapshot of the stopped instance")
    snaps = b.call("snapshot.list", p)["snapshots"]
    check([s["name"] for s in snaps] == ["s1"] and snaps[0]["comment"] == "c",
          f"snapshot.list: {snaps}")
    check(b.call("snapshot.restore", dict(p, snapshot={"name": "s1"})) is not None,
          "snapshot restore")

    clone = b.instance("e2e-clone", "52:54:00:e2:e0:02")
    check(b.call("instance.clone", dict(p, clone=clone)) == {}, "clone")
    cdisk = os.path.join(clone["dir"], "disk.qcow2")
    check(os.path.exists(cdisk) and virtual_size(cdisk) == virtual_size(disk),
          "the clone has its own disk of the same size")

    check(b.call("instance.delete", p) == {}, "delete")
    left = sorted(os.listdir(vm["dir"]))
    check("qemu.pid" not in left and "ssh-port" not in left and "disk.qcow2" in left,
          f"delete removes runtime files and leaves the disk to the broker: {left}")
    b.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helper", required=True)
    args = ap.parse_args()
    for f in ("fast.qcow2", "fast.vmlinuz", "fast.initrd", "fast.cmdline"):
        if not os.path.exists(os.path.join(IMAGES, f)):
            log(f"FAIL: {IMAGES}/{f} is missing (run tools/build-image.sh)")
            return 1
    b = Bench(args.helper)
    try:
        run(b)
    except Failed as e:
        log(f"FAIL: {e}")
        return 1
    finally:
        b.cleanup()
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
