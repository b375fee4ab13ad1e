#!/usr/bin/env bash
# The demonstration: from a fresh Debian 12 machine (as root) to a running
# vmctl instance, in one command.
#
#   bash tools/demo.sh
#
# Installs the Debian packages vmctl needs, builds it in ./build, builds the
# `full` test image from the host's own packages (cached for later runs),
# then, with a fresh data folder, launches an instance and runs commands in it.
set -euo pipefail

cd "$(dirname "$0")/.."
src=$(pwd)
step() { printf '\n==> %s\n' "$*"; }

step "installing build and run dependencies"
bash tools/install-deps.sh

step "building vmctl in ./build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

step "building the test image (about 3 minutes the first time, cached afterwards)"
images=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}
bash tools/build-image.sh "$images"

# A fresh data folder: its own broker, started on demand by vmctl itself.
export VMCTL_DATA=${VMCTL_DEMO_DATA:-$src/build/demo-data}
if [ -S "$VMCTL_DATA/vmctld.sock" ]; then
	"$src/build/bin/vmctl" delete --all --purge >/dev/null 2>&1 || true
fi
if [ -d "$VMCTL_DATA" ]; then
	# A broker left by an earlier demo would keep the old state: stop it.
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = vmctld ] || continue
		tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "VMCTL_DATA=$VMCTL_DATA" || continue
		kill "${p#/proc/}" 2>/dev/null || true
	done
	sleep 1
	rm -rf "$VMCTL_DATA"
fi
mkdir -p "$VMCTL_DATA"
vmctl() {
	printf '\n$ vmctl %s\n' "$*"
	"$src/build/bin/vmctl" "$@"
}

step "running vmctl (data folder $VMCTL_DATA; this host emulates the CPU, so the boot takes about 30 s)"
vmctl launch "$images/full.qcow2" --name demo --timeout 900
vmctl exec demo -- uname -a
vmctl exec demo -- cat /etc/os-release
vmctl list

cat <<MSG

The instance keeps running. Try, with the same data folder:
  export VMCTL_DATA=$VMCTL_DATA
  build/bin/vmctl shell demo
  build/bin/vmctl stop demo
  build/bin/vmctl delete --purge demo
MSG
