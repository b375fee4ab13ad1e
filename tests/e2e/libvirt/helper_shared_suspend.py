"""A suspended instance in the shared qemu scope, with both helpers on the
same instance folder: each driver's saved state is its own, and neither may
resurrect a stale memory image over a disk the other changed."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lvclient import Helper, Scope, check, expect_error  # noqa: E402

E_INVALID_STATE = 11


def managed_save(dom):
    r = subprocess.run(["virsh", "-q", "dominfo", dom], stdout=subprocess.PIPE, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("Managed save:"):
            return line.split(":", 1)[1].strip()
    return "?"


def guest(scope, h, inst, command):
    host, port = scope.wait_ssh(h, inst)
    r = scope.ssh(host, port, command)
    return r.stdout.strip()


def main():
    scope = Scope()
    run_dir = os.environ["LV_RUN"]
    lv_log = open(os.path.join(run_dir, "libvirt-helper.log"), "w")
    qh_log = open(os.path.join(run_dir, "qemu-helper.log"), "w")
    lv = Helper(os.environ["LV_HELPER"], scope.dir, {}, lv_log)
    qh = Helper(os.environ["LV_QEMU_HELPER"], scope.dir, {}, qh_log)
    try:
        run(lv, qh, scope, os.environ["LVT_PREFIX"])
    finally:
        for h, log in ((lv, lv_log), (qh, qh_log)):
            h.close()
            log.close()
            with open(log.name) as f:
                sys.stderr.write(f"{os.path.basename(log.name)}:\n" +
                                 "".join("  | " + l for l in f.readlines()[-20:]))


def run(lv, qh, scope, prefix):
    name = prefix + "-ss"
    dom = "vmctl-" + name
    inst = scope.instance(name)
    ls = lambda h: h.call("instances.list", {"instances": [inst]})["instances"][0]["state"]

    # Suspended by libvirt, then run under qemu: the save is stale.
    lv.call("instance.create", {"instance": inst})
    lv.call("instance.start", {"instance": inst})
    guest(scope, lv, inst, "echo one > /home/ubuntu/one; sync")
    check(lv.call("instance.suspend", {"instance": inst})["state"] == "suspended",
          "suspended under libvirt")
    check(managed_save(dom) == "yes", "libvirt holds a managed save")
    qh.call("instance.start", {"instance": inst})
    out = guest(scope, qh, inst, "cat /home/ubuntu/one; echo two > /home/ubuntu/two; sync")
    check(out == "one", "the qemu driver booted the same disk")
    check(qh.call("instance.stop", {"instance": inst, "timeout": 240}, timeout=300)["state"]
          == "stopped", "stopped under qemu")
    check(ls(lv) == "suspended", "libvirt still lists it suspended (its save exists)")
    check(lv.call("instance.start", {"instance": inst})["state"] == "running",
          "libvirt starts it")
    check(managed_save(dom) == "no", "the stale managed save was discarded")
    out = guest(scope, lv, inst, "cat /home/ubuntu/two")
    check(out == "two", "it booted the disk as qemu left it, not the stale memory image")
    lv.call("instance.stop", {"instance": inst, "timeout": 240}, timeout=300)

    # Suspended by qemu: libvirt cannot resume that, and says so.
    qh.call("instance.start", {"instance": inst})
    guest(scope, qh, inst, "echo three > /home/ubuntu/three; sync")
    check(qh.call("instance.suspend", {"instance": inst})["state"] == "suspended",
          "suspended under qemu")
    check(ls(lv) == "suspended", "libvirt lists the qemu-suspended instance as suspended")
    e = expect_error(lambda: lv.call("instance.start", {"instance": inst}), E_INVALID_STATE,
                     "libvirt refuses to start an instance suspended by qemu")
    check("qemu driver" in e.message and "--force" in e.message,
          "and says which driver can resume it and how to discard the state")
    expect_error(lambda: lv.call("instance.stop", {"instance": inst, "timeout": 60}),
                 E_INVALID_STATE, "a plain stop does not discard qemu's saved state")
    check(lv.call("instance.stop", {"instance": inst, "force": True})["state"] == "stopped",
          "a forced stop under libvirt discards it")
    check(not os.path.exists(os.path.join(inst["dir"], "suspended")), "the qemu marker is gone")
    snaps = subprocess.run(["qemu-img", "snapshot", "-U", "-l",
                            os.path.join(inst["dir"], "disk.qcow2")],
                           stdout=subprocess.PIPE, text=True)
    check(snaps.returncode == 0, "qemu-img lists the disk's snapshots")
    check("vmctl-suspend" not in snaps.stdout, "and so is qemu's saved RAM in the disk")
    check(ls(qh) == "stopped", "the qemu driver now sees it stopped too")
    lv.call("instance.start", {"instance": inst})
    out = guest(scope, lv, inst, "cat /home/ubuntu/three")
    check(out == "three", "libvirt boots the disk with what was written under qemu")
    lv.call("instance.stop", {"instance": inst, "force": True})
    lv.call("instance.delete", {"instance": inst})
    qh.call("instance.delete", {"instance": inst})


if __name__ == "__main__":
    main()
    print("PASS", file=sys.stderr)
