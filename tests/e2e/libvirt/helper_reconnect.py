"""libvirtd killed and restarted under a running instance: the helper reports
the instance unknown (not lost, not stopped), answers operations with
"unavailable" and why, reconnects by itself, and the instance is running and
reachable again - the VM never died."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lvclient import Helper, HelperError, Scope, check  # noqa: E402

E_UNAVAILABLE = 7


def daemon(action):
    # lvlib.sh owns the daemons; it exports nothing to start one from Python,
    # so do what it does, with the same pid file.
    pidfile = os.path.join(os.environ["LV_RUN"], "libvirtd.pid")
    if action == "kill":
        pid = int(open(pidfile).read())
        os.kill(pid, 9)
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        os.unlink(pidfile)
        return pid
    subprocess.run(["libvirtd", "-d", "-p", pidfile], check=True)
    for _ in range(200):
        if os.path.exists("/run/libvirt/libvirt-sock") and os.path.exists(pidfile):
            return int(open(pidfile).read())
        time.sleep(0.1)
    raise RuntimeError("libvirtd did not come back")


def qemu_pid(name):
    r = subprocess.run(["pgrep", "-f", f"guest=vmctl-{name},"], stdout=subprocess.PIPE, text=True)
    pids = r.stdout.split()
    return int(pids[0]) if pids else 0


def main():
    scope = Scope()
    log = open(os.path.join(os.environ["LV_RUN"], "helper.log"), "w")
    h = Helper(os.environ["LV_HELPER"], scope.dir, {}, log)
    try:
        run(h, scope, os.environ["LVT_PREFIX"])
    finally:
        h.close()
        log.close()
        with open(log.name) as f:
            sys.stderr.write("helper log:\n" + "".join("  | " + l for l in f.readlines()[-30:]))


def run(h, scope, prefix):
    name = prefix + "-recon"
    inst = scope.instance(name)
    h.call("instance.create", {"instance": inst})
    check(h.call("instance.start", {"instance": inst})["state"] == "running", "started")
    host, port = scope.wait_ssh(h, inst)
    vm = qemu_pid(name)
    check(vm > 0, f"the guest's QEMU runs (pid {vm})")

    mark = h.mark()
    daemon("kill")
    check(h.wait_state(name, "unknown", 30, mark),
          f"with libvirtd gone the instance is notified unknown ({h.states(name, mark)})")
    st = h.call("instances.list", {"instances": [inst]})
    check([(i["name"], i["state"]) for i in st["instances"]] == [(name, "unknown")],
          f"instances.list still lists it, as unknown ({st})")
    try:
        h.call("instance.state", {"instance": inst})
        check(False, "instance.state fails while libvirtd is away")
    except HelperError as e:
        check(e.code == E_UNAVAILABLE and "cannot reach libvirt at qemu:///system" in e.message,
              f"instance.state answers unavailable with the reason ({e.message})")
    check(os.path.exists(f"/proc/{vm}"), "the guest kept running without libvirtd")
    r = scope.ssh(host, port, "echo still-here")
    check(r.stdout.strip() == "still-here", "and still answers SSH")
    check(h.call("ping", {}) == {}, "the helper still answers ping")

    mark = h.mark()
    daemon("start")
    check(h.wait_state(name, "running", 120, mark),
          f"after libvirtd returns the helper reconnects and notifies running "
          f"({h.states(name, mark)})")
    check(h.call("instance.state", {"instance": inst})["state"] == "running",
          "instance.state works again and says running")
    check(qemu_pid(name) == vm, "it is the same QEMU process as before")

    # A second loss, this time with an operation waiting on the reconnect.
    mark = h.mark()
    daemon("kill")
    check(h.wait_state(name, "unknown", 30, mark), "unknown again after a second kill")
    daemon("start")
    r = h.call("instance.stop", {"instance": inst, "force": True}, timeout=120)
    check(r["state"] == "stopped", "a stop sent right after libvirtd restarted works")
    check(not os.path.exists(f"/proc/{vm}"), "and the guest's QEMU is gone")
    h.call("instance.delete", {"instance": inst})


if __name__ == "__main__":
    main()
    print("PASS", file=sys.stderr)
