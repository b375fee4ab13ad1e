"""The libvirt helper over its pipes, as the broker drives it: hello, create,
start, exec over SSH, suspend/resume keeping a process, stop, start, forced
stop, delete. Checked against what libvirt itself says (virsh) and what the
guest says."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lvclient import Helper, Scope, check, expect_error  # noqa: E402

E_UNSUPPORTED = 4
E_INVALID_STATE = 11


def virsh(*args):
    # Every question asked here is about a domain that exists (or the list
    # of them): a failing virsh fails the test rather than answer "no".
    r = subprocess.run(["virsh", "-q"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    check(r.returncode == 0, f"virsh {' '.join(args)} answers ({r.stdout.strip()})")
    return r.stdout.strip()


def main():
    prefix = os.environ["LVT_PREFIX"]
    scope = Scope()
    log = open(os.path.join(os.environ["LV_RUN"], "helper.log"), "w")
    h = Helper(os.environ["LV_HELPER"], scope.dir, {}, log)
    try:
        run(h, scope, prefix)
    finally:
        h.close()
        log.close()
        with open(log.name) as f:
            sys.stderr.write("helper log:\n" + "".join("  | " + l for l in f.readlines()[-30:]))


def run(h, scope, prefix):
    check(h.hello["driver"] == "libvirt" and h.hello["scope"] == "qemu",
          f"hello names driver libvirt in scope qemu ({h.hello})")
    check(h.hello["usable"], "the helper says it is usable")
    check(h.hello["features"] == ["suspend"],
          f"features are exactly [suspend] ({h.hello['features']})")

    name = prefix + "-life"
    dom = "vmctl-" + name
    inst = scope.instance(name)
    expect_error(lambda: h.call("snapshot.create", {"instance": inst,
                                                    "snapshot": {"name": "s1", "comment": ""}}),
                 E_UNSUPPORTED, "snapshot.create is unsupported")
    expect_error(lambda: h.call("instance.clone", {"instance": inst, "clone": inst}),
                 E_UNSUPPORTED, "instance.clone is unsupported")

    # create: the shared overlay, the same as the qemu driver makes.
    h.call("instance.create", {"instance": inst})
    disk = os.path.join(inst["dir"], "disk.qcow2")
    info = subprocess.run(["qemu-img", "info", "-U", disk], stdout=subprocess.PIPE,
                          text=True).stdout
    check("file format: qcow2" in info and f"backing file: {inst['image']['disk']}" in info
          and "backing file format: qcow2" in info,
          "instance.create made DIR/disk.qcow2, a qcow2 overlay on the image")
    xml = virsh("dumpxml", dom)
    check("<domain type='qemu'" in xml,
          "the domain is defined with type qemu (KVM does not work on this host)")
    check(disk in xml and inst["seed"] in xml and inst["mac"] in xml,
          "the domain uses the overlay, the seed and the instance's MAC")
    check(virsh("domstate", dom) == "shut off", "a created instance is shut off")
    st = h.call("instances.list", {"instances": [inst]})
    check([(i["name"], i["state"]) for i in st["instances"]] == [(name, "stopped")],
          f"instances.list says stopped ({st})")

    # start, SSH, a process that must survive the suspend.
    mark = h.mark()
    r = h.call("instance.start", {"instance": inst})
    check(r["state"] == "running", "instance.start answers running")
    check(virsh("domstate", dom) == "running", "virsh says the domain is running")
    check("running" in h.states(name, mark), "a state notification said running")
    host, port = scope.wait_ssh(h, inst)
    check(host.startswith("10.98.0.") and port == 22,
          f"SSH listens on the guest's DHCP lease in the vmctl network ({host}:{port})")
    info = h.call("instance.info", {"instance": inst})
    check(info["state"] == "running" and host in info["ipv4"] and info["pid"] > 0,
          f"instance.info gives state, addresses and the QEMU pid ({info})")
    st = h.call("instances.list", {"instances": [inst]})
    check(st["instances"][0]["state"] == "running" and st["instances"][0]["ipv4"] == [host],
          f"instances.list gives the running instance's address ({st})")
    r = scope.ssh(host, port, "hostname")
    check(r.returncode == 0 and r.stdout.strip() == name, "exec over SSH runs in the guest")
    r = scope.ssh(host, port, "nohup sleep 100000 >/dev/null 2>&1 & echo $!")
    sleeper = r.stdout.strip()
    check(r.returncode == 0 and sleeper.isdigit(), f"started a process in the guest ({sleeper})")

    # suspend = managed save; start restores it.
    mark = h.mark()
    r = h.call("instance.suspend", {"instance": inst})
    check(r["state"] == "suspended", "instance.suspend answers suspended")
    check(virsh("domstate", dom) == "shut off", "after suspend the domain is off")
    check(virsh("dominfo", dom).find("Managed save:   yes") >= 0,
          "and has a managed save image")
    check(h.states(name, mark)[-1:] == ["suspended"],
          f"notifications ended with suspended ({h.states(name, mark)})")
    st = h.call("instances.list", {"instances": [inst]})
    check(st["instances"][0]["state"] == "suspended", "instances.list says suspended")
    expect_error(lambda: h.call("instance.stop", {"instance": inst, "timeout": 60}),
                 E_INVALID_STATE, "a plain stop refuses to discard the suspended state")
    r = h.call("instance.start", {"instance": inst})
    check(r["state"] == "running", "start after suspend answers running")
    host, port = scope.wait_ssh(h, inst)
    r = scope.ssh(host, port, f"kill -0 {sleeper} && echo alive")
    check(r.stdout.strip() == "alive", "the process started before suspend is still running")
    check(virsh("dominfo", dom).find("Managed save:   no") >= 0,
          "the managed save image is gone after the restore")

    # graceful stop (ACPI), start again, forced stop.
    mark = h.mark()
    t = time.time()
    r = h.call("instance.stop", {"instance": inst, "timeout": 240}, timeout=300)
    check(r["state"] == "stopped" and virsh("domstate", dom) == "shut off",
          f"a graceful stop powered the guest off ({time.time() - t:.1f} s)")
    check("stopping" in h.states(name, mark) and h.states(name, mark)[-1] == "stopped",
          f"notifications went through stopping to stopped ({h.states(name, mark)})")
    con = open(os.path.join(inst["dir"], "console.log"), errors="replace").read()
    check("power button" in con, "the guest saw the ACPI power button")
    r = h.call("instance.start", {"instance": inst})
    check(r["state"] == "running", "start after stop answers running")
    host, port = scope.wait_ssh(h, inst)
    r = scope.ssh(host, port, f"kill -0 {sleeper} 2>/dev/null && echo alive || echo gone")
    check(r.stdout.strip() == "gone", "after stop/start the guest booted afresh")
    expect_error(lambda: h.call("instance.set", {"instance": inst, "key": "cpus", "value": 2}),
                 E_INVALID_STATE, "instance.set refuses a running instance")
    r = h.call("instance.stop", {"instance": inst, "force": True})
    check(r["state"] == "stopped" and virsh("domstate", dom) == "shut off",
          "a forced stop powers off at once")

    # instance.set on the stopped instance.
    h.call("instance.set", {"instance": inst, "key": "cpus", "value": 2})
    check("<vcpu placement='static'>2</vcpu>" in virsh("dumpxml", dom),
          "instance.set cpus=2 updated the domain definition")
    h.call("instance.set", {"instance": inst, "key": "disk", "value": "3G"})
    info = subprocess.run(["qemu-img", "info", "-U", disk], stdout=subprocess.PIPE,
                          text=True).stdout
    check("virtual size: 3 GiB" in info, "instance.set disk=3G grew the overlay")
    expect_error(lambda: h.call("instance.set", {"instance": inst, "key": "disk", "value": "1G"}),
                 1, "instance.set refuses to shrink the disk")

    # delete: the domain goes, the files stay for the broker to remove.
    h.call("instance.delete", {"instance": inst})
    check(dom not in virsh("list", "--all", "--name").split(),
          "instance.delete removed the domain definition")
    check(os.path.exists(disk) and os.path.exists(inst["seed"]),
          "instance.delete kept the disk and the seed")
    st = h.call("instances.list", {"instances": [inst]})
    check(st["instances"][0]["state"] == "stopped",
          "a deleted domain's instance lists as stopped (its files remain)")


if __name__ == "__main__":
    main()
    print("PASS", file=sys.stderr)
