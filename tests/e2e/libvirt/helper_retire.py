"""What the libvirt helper leaves in libvirt: a helper that dies (no
shutdown) leaves its domains; the next one removes those whose instance
folder is gone (orphans) and keeps the others; a helper that shuts down
undefines the idle domains (defined again at the next start) and nothing
of the instances' files goes with them. No guest boots."""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lvclient import Helper, Scope, check  # noqa: E402


def defined(dom):
    # From the list of all domains: a virsh that fails says nothing about
    # dom, and must not pass for "not defined".
    r = subprocess.run(["virsh", "-q", "list", "--all", "--name"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    check(r.returncode == 0, f"virsh list answers ({r.stdout.strip()})")
    return dom in r.stdout.split()


def main():
    prefix = os.environ["LVT_PREFIX"]
    scope = Scope()
    log = open(os.path.join(os.environ["LV_RUN"], "helper.log"), "w")
    a, b = scope.instance(prefix + "-ra"), scope.instance(prefix + "-rb")
    da, db = "vmctl-" + a["name"], "vmctl-" + b["name"]

    h = Helper(os.environ["LV_HELPER"], scope.dir, {}, log)
    h.call("instance.create", {"instance": a})
    h.call("instance.create", {"instance": b})
    check(defined(da) and defined(db), "instance.create defined both domains")
    h.proc.send_signal(signal.SIGKILL)
    h.proc.wait()
    check(defined(da) and defined(db), "a helper killed with SIGKILL leaves its domains")

    shutil.rmtree(a["dir"])
    h = Helper(os.environ["LV_HELPER"], scope.dir, {}, log)
    h.call("instances.list", {"instances": [b]})
    deadline = time.time() + 30
    while defined(da) and time.time() < deadline:
        time.sleep(0.5)
    check(not defined(da), "the next helper removed the domain whose instance folder is gone")
    check(defined(db), "and kept the domain of the instance that still exists")

    h.close()
    check(not defined(db), "a helper that shuts down undefines the idle domain")
    check(os.path.exists(os.path.join(b["dir"], "disk.qcow2")) and os.path.exists(b["seed"]),
          "the instance's disk and seed stay")
    log.close()
    print("PASS")


if __name__ == "__main__":
    main()
