#!/usr/bin/env bash
# The drivers table of docs/cli.md ("Drivers") says what the helpers say:
# for every driver whose helper is built, its scope and each feature in the
# table are those of `vmctl drivers --format csv` (the helper's own hello),
# so the table cannot drift from the code. Needs no VM.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DOC=$SRC/docs/cli.md
[ -f "$DOC" ] || fail "$DOC is missing"

# No daemon of the host's is touched (see test-drivers-list.sh); an
# unusable helper still says its features in hello.
vmctl set local.libvirt.uri=test:///default
expect_rc 0
vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
expect_rc 0
vmctl drivers --format csv
expect_rc 0
printf '%s\n' "$OUT" >"$E2E_TMP/drivers.csv"

python3 - "$DOC" "$E2E_TMP/drivers.csv" <<'PYEOF' || fail "the drivers table of docs/cli.md differs from what the helpers report"
import csv, re, sys

doc, measured = sys.argv[1], sys.argv[2]
text = open(doc).read()
section = text.split("\n## Drivers\n", 1)[1].split("\n## ", 1)[0]
lines = [l for l in section.splitlines() if l.startswith("| ")]
head = [c.strip() for c in lines[0].strip("|").split("|")]
want = ["driver", "platforms", "scope", "native mounts", "extra networks", "snapshots", "clone", "suspend"]
assert head == want, head
table = {}
for l in lines[1:]:
    cells = [c.strip() for c in l.strip("|").split("|")]
    table[cells[0]] = dict(zip(head, cells))
rows = {r["Driver"]: r for r in csv.DictReader(open(measured))}
columns = {"native mounts": "Mounts", "extra networks": "Networks", "snapshots": "Snapshots",
           "clone": "Clone", "suspend": "Suspend"}
bad = []
for seed in ["qemu", "libvirt", "lxd", "hyperv", "virtualbox"]:
    if seed not in table:
        bad.append("the table has no row for %s" % seed)
    if seed not in rows:
        bad.append("vmctl drivers has no row for %s" % seed)
checked = 0
for name, row in rows.items():
    if row["Helper"] == "not found":
        continue
    if name not in table:
        bad.append("%s has a helper but no row in the table" % name)
        continue
    checked += 1
    if table[name]["scope"] != row["Scope"]:
        bad.append("%s: scope %s in the table, %s from its helper" % (name, table[name]["scope"], row["Scope"]))
    for title, col in columns.items():
        if table[name][title] != row[col]:
            bad.append("%s: %s is %s in the table, %s from its helper" % (name, title, table[name][title], row[col]))
print("checked %d drivers against %s" % (checked, doc))
for b in bad:
    print("MISMATCH: " + b)
sys.exit(1 if bad or checked == 0 else 0)
PYEOF
e2e_log "PASS"
