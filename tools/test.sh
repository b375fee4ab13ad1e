#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh Debian 12 machine as root:
#
#   bash tools/test.sh
#
# 1. installs the Debian packages vmctl needs;
# 2. builds with -Wall -Wextra (RelWithDebInfo) in build/ and runs the unit
#    tests;
# 3. builds again with AddressSanitizer and UndefinedBehaviorSanitizer in
#    build-sanitize/ and runs the unit tests there;
# 4. builds the test images (tools/build-image.sh, cached) and runs the
#    end-to-end tests against QEMU with the build/ binaries; then fails the
#    run if they left a daemon, guest, interface, mount or temporary folder
#    behind (tools/leftovers.sh).
# Exits non-zero when any step or test fails; every step still runs, so one
# report shows everything that is broken.
#
# Environment: VMCTL_TEST_SKIP_E2E=1 skips step 4; JOBS sets build parallelism.
set -uo pipefail

cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
failed=()
step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "installing dependencies"
bash tools/install-deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 1; }

build_and_unit() {
	local dir=$1 label=$2
	shift 2
	step "$label: configure and build in $dir"
	if ! cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1; then
		cat "$dir/configure.log"
		failed+=("$label build")
		return 1
	fi
	if ! cmake --build "$dir" -j"$jobs"; then
		failed+=("$label build")
		return 1
	fi
	step "$label: unit tests"
	ctest --test-dir "$dir" -LE e2e --output-on-failure -j"$jobs" || failed+=("$label unit tests")
}

mkdir -p build build-sanitize
build_and_unit build "release" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS="-Wall -Wextra"
main_built=$?
# detect_leaks stays on: the unit tests own all their memory.
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	build_and_unit build-sanitize "sanitize" -DCMAKE_BUILD_TYPE=Debug -DVMCTL_SANITIZE=ON

if [ "${VMCTL_TEST_SKIP_E2E:-0}" = 1 ]; then
	step "end-to-end tests skipped (VMCTL_TEST_SKIP_E2E=1)"
elif [ "$main_built" -ne 0 ]; then
	step "end-to-end tests skipped: the build failed"
	failed+=("end-to-end tests (not run)")
else
	step "end-to-end tests (QEMU; the first run also builds the test images, ~3 min)"
	bash tools/leftovers.sh snapshot build/leftovers.before
	ctest --test-dir build -L e2e --output-on-failure || failed+=("end-to-end tests")
	step "nothing left behind by the end-to-end tests"
	bash tools/leftovers.sh check build/leftovers.before && echo "none" ||
		failed+=("end-to-end tests left processes, interfaces, mounts or folders behind")
fi

step "summary ($(( ($(date +%s) - t0) / 60 )) min)"
if [ ${#failed[@]} -eq 0 ]; then
	echo "all tests passed"
	exit 0
fi
printf 'FAILED: %s\n' "${failed[@]}"
exit 1
