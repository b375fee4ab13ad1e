"""Drive vmctl-libvirt-helper (or any vmctl helper) over its pipes, as the
broker does: MessagePack-RPC on stdin/stdout, log on stderr.

Also the fixtures the libvirt end-to-end tests share: a private libvirtd and
virtlogd, an instance folder with a NoCloud seed, SSH into the guest.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack


class HelperError(Exception):
    def __init__(self, code, message):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class Helper:
    """One helper process; call() sends a request and waits for its answer,
    keeping every notification in self.notes."""

    def __init__(self, path, scope_dir, settings=None, log=None):
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log if log else None)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.notes = []
        self.hello = self.call("hello", {"versions": [1], "scope_dir": scope_dir,
                                         "settings": settings or {}}, timeout=30)

    def _send(self, obj):
        self.proc.stdin.write(msgpack.packb(obj, use_bin_type=True))
        self.proc.stdin.flush()

    def _read(self, timeout):
        fd = self.proc.stdout.fileno()
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return False
        data = os.read(fd, 65536)
        if not data:
            raise EOFError("helper closed its pipe")
        self.unpacker.feed(data)
        return True

    def _messages(self):
        for msg in self.unpacker:
            yield msg

    def call(self, method, params=None, timeout=120):
        self.msgid += 1
        mid = self.msgid
        self._send([0, mid, method, params if params is not None else {}])
        deadline = time.time() + timeout
        while True:
            for msg in self._messages():
                if msg[0] == 2:
                    self.notes.append((time.time(), msg[1], msg[2]))
                elif msg[0] == 1 and msg[1] == mid:
                    if msg[2] is not None:
                        raise HelperError(msg[2][0], msg[2][1])
                    return msg[3]
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer within {timeout} s")
            self._read(min(left, 1.0))

    def pump(self, seconds):
        """Collect notifications for a while."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self._read(max(0.0, min(deadline - time.time(), 0.5)))
            for msg in self._messages():
                if msg[0] == 2:
                    self.notes.append((time.time(), msg[1], msg[2]))

    def states(self, name, since=0):
        """New states notified for name, from note index since on."""
        return [n[2]["new"] for n in self.notes[since:]
                if n[1] == "state" and n[2].get("name") == name]

    def mark(self):
        return len(self.notes)

    def wait_state(self, name, state, timeout, since=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if state in self.states(name, since):
                return True
            self.pump(0.5)
        return False

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("shutdown", {}, timeout=10)
            except (HelperError, EOFError, TimeoutError, BrokenPipeError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Daemons:
    """virtlogd and libvirtd, started by hand (no systemd here), as children."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.pids = {}

    def _pidfile(self, name):
        return os.path.join(self.workdir, name + ".pid")

    def start_one(self, name, wait_socket):
        pidfile = self._pidfile(name)
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        subprocess.run([name, "-d", "-p", pidfile], check=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(pidfile) and os.path.exists(wait_socket):
                with open(pidfile) as f:
                    self.pids[name] = int(f.read().strip())
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def start(self):
        for name in ("libvirtd", "virtlogd"):
            if self.running_elsewhere(name):
                raise RuntimeError(f"a {name} not started by this test is running; stop it first")
        self.start_one("virtlogd", "/run/libvirt/virtlogd-sock")
        self.start_one("libvirtd", "/run/libvirt/libvirt-sock")

    @staticmethod
    def running_elsewhere(name):
        return subprocess.run(["pgrep", "-x", name], stdout=subprocess.DEVNULL).returncode == 0

    def kill(self, name, sig=signal.SIGTERM):
        pid = self.pids.pop(name, None)
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def stop(self):
        self.kill("libvirtd")
        self.kill("virtlogd")


IMAGES = os.environ.get("VMCTL_TEST_IMAGES", "/var/cache/vmctl-test-images")


def image(variant="fast", into=None):
    """The test image as an instance map's "image". With into, the files are
    first hard-linked (else copied) there: an overlay names its base by path,
    and a rebuild of the shared images during the test must not change the
    base under a running guest."""
    base = os.path.join(IMAGES, variant)
    with open(base + ".cmdline") as f:
        cmdline = f.read().strip()
    files = {}
    for ext in ("qcow2", "vmlinuz", "initrd"):
        src = base + "." + ext
        if into:
            dst = os.path.join(into, variant + "." + ext)
            if not os.path.exists(dst):
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            src = dst
        files[ext] = src
    return {"disk": files["qcow2"], "format": "qcow2", "kernel": files["vmlinuz"],
            "initrd": files["initrd"], "cmdline": cmdline}


class Scope:
    """A scope folder with SSH keys and instance folders with NoCloud seeds."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scope-", dir=os.environ.get("LV_RUN"))
        os.chmod(self.dir, 0o700)
        self.key = os.path.join(self.dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        self.macs = 0
        self.images = os.path.join(self.dir, "images")
        os.makedirs(self.images)

    def instance(self, name, variant="fast", memory=512 << 20, cpus=1):
        d = os.path.join(self.dir, "instances", name)
        os.makedirs(d, exist_ok=True)
        with open(self.key + ".pub") as f:
            pub = f.read().strip()
        with open(os.path.join(d, "user-data"), "w") as f:
            f.write(f"#cloud-config\nssh_authorized_keys:\n  - {pub}\n")
        with open(os.path.join(d, "meta-data"), "w") as f:
            f.write(f"instance-id: {name}\nlocal-hostname: {name}\n")
        seed = os.path.join(d, "cloud-init.iso")
        subprocess.run(["genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet",
                        "-rock", os.path.join(d, "user-data"), os.path.join(d, "meta-data")],
                       check=True)
        self.macs += 1
        mac = "52:54:00:%02x:%02x:%02x" % (os.getpid() & 0xff, (os.getpid() >> 8) & 0xff,
                                           self.macs)
        return {"name": name, "dir": d, "cpus": cpus, "memory": memory, "disk": 2 << 30,
                "mac": mac, "image": image(variant, self.images), "seed": seed}

    def ssh(self, host, port, command, timeout=30):
        return subprocess.run(
            ["ssh", "-i", self.key, "-p", str(port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", f"ubuntu@{host}", command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)

    def wait_ssh(self, helper, inst, timeout=180):
        """Poll info until the guest has an address and answers SSH, as the
        broker does; returns (host, port)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            info = helper.call("instance.info", {"instance": inst})
            if info.get("ssh_host") and info.get("ssh_port"):
                try:
                    r = self.ssh(info["ssh_host"], info["ssh_port"], "true", timeout=20)
                except subprocess.TimeoutExpired:
                    # A port forward accepts before the guest's sshd exists.
                    last = "no SSH banner within 20 s"
                    continue
                if r.returncode == 0:
                    return info["ssh_host"], info["ssh_port"]
                last = r.stderr.strip()
            time.sleep(1)
        raise TimeoutError(f"{inst['name']}: no SSH within {timeout} s ({last})")


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        raise AssertionError(what)
    print(f"ok: {what}", file=sys.stderr)


def expect_error(fn, code, what):
    try:
        fn()
    except HelperError as e:
        check(e.code == code, f"{what} (got [{e.code}] {e.message})")
        return e
    check(False, f"{what} (no error)")
