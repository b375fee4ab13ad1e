#!/usr/bin/env bash
# Cached images unused for local.image.prune-after are removed when the
# broker starts; images that an instance of any scope uses are kept, however
# old, and so are recently used ones. No VM is needed.
. "$(dirname "$0")/lib.sh"

imgs=$VMCTL_DATA/images
mkdir -p "$imgs" "$VMCTL_DATA/scopes/qemu" "$VMCTL_DATA/scopes/lxd"
h() { printf '%064d' "$1"; }
old_unused=$imgs/$(h 1).img
old_used_here=$imgs/$(h 2).qcow2
old_used_elsewhere=$imgs/$(h 3).img
fresh_unused=$imgs/$(h 4).img
not_an_image=$imgs/notes.txt
for f in "$old_unused" "$old_used_here" "$old_used_elsewhere" "$fresh_unused" "$not_an_image"; do
	echo data >"$f"
done
touch -d '60 days ago' "$old_unused" "$old_used_here" "$old_used_elsewhere" "$not_an_image"

record() { # NAME DISK
	printf 'instances:\n  %s:\n    state: stopped\n    image: "file://%s"\n    image_disk: "%s"\n    image_format: qcow2\n    mac: "52:54:00:00:00:01"\n    cpus: 1\n    memory: 1073741824\n    disk: 5368709120\n    deleted: false\n' "$1" "$2" "$2"
}
record keeper "$old_used_here" >"$VMCTL_DATA/scopes/qemu/instances.yaml"
record elsewhere "$old_used_elsewhere" >"$VMCTL_DATA/scopes/lxd/instances.yaml"

vmctl list
expect_rc 0
expect_out '^keeper'

gone() { [ ! -e "$old_unused" ]; }
wait_until 30 gone || fail "the old unused image was not pruned"
[ -e "$old_used_here" ] || fail "an image used by an instance of the active scope was removed"
[ -e "$old_used_elsewhere" ] || fail "an image used by an instance of another scope was removed"
[ -e "$fresh_unused" ] || fail "a recently used image was removed"
[ -e "$not_an_image" ] || fail "a file that is not a cached image was removed"

# "never" keeps everything: restart the broker with an old unused image again.
vmctl set local.image.prune-after=never
expect_rc 0
echo data >"$old_unused"
touch -d '60 days ago' "$old_unused"
pids=$(broker_pids)
kill $pids 2>/dev/null
no_broker() { [ -z "$(broker_pids)" ]; }
wait_until 30 no_broker || fail "the broker did not exit on SIGTERM"
vmctl list
expect_rc 0
sleep 2
[ -e "$old_unused" ] || fail "prune-after=never still removed an image"

e2e_log PASS
