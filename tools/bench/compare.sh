#!/usr/bin/env bash
# Compare two build trees of vmctl side by side, alternating between them
# for every sample so that a change in the machine's load hits both alike:
# first start and cold start of `vmctl version`, `vmctl list` with 1,000
# instances, and helper restart after SIGKILL of a helper up 31 s.
#
#   tools/bench/compare.sh BEFORE_BUILD AFTER_BUILD
#
# Each BUILD is a CMake build tree (Release) with bin/vmctl, bin/vmctld and
# libexec/vmctl/; AFTER_BUILD must also hold tools/bench/vmctl-bench. Prints
# one line per figure and build; everything runs in a temporary folder.
#
# Environment: COMPARE_N samples of the start figures (default 7),
# COMPARE_BLOCKS blocks of 10 lists (default 3), COMPARE_RESTARTS (default 3).
set -u

[ $# = 2 ] || { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
BEFORE=$(cd "$1" && pwd) || exit 2
AFTER=$(cd "$2" && pwd) || exit 2
BENCH=$AFTER/tools/bench/vmctl-bench
for f in "$BEFORE/bin/vmctl" "$AFTER/bin/vmctl" "$BENCH"; do
	[ -x "$f" ] || { echo "compare.sh: $f is not built" >&2; exit 2; }
done
N=${COMPARE_N:-7} BLOCKS=${COMPARE_BLOCKS:-3} RESTARTS=${COMPARE_RESTARTS:-3}
TMP=$(mktemp -d /tmp/vmctl-compare.XXXXXX)
declare -A BIN=([before]=$BEFORE [after]=$AFTER)

now() { date +%s%N; }
ms_since() { echo $((($(now) - $1) / 1000000)); }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# vmctl's processes (broker, helpers) serving data folder $1.
pids_of() {
	local p
	for p in $(pgrep -x vmctld) $(pgrep -x vmctl-qemu-help) $(pgrep -x vmctl-libvirt-h); do
		grep -qzxF "VMCTL_DATA=$1" "/proc/$p/environ" 2>/dev/null && echo "$p"
	done
}
broker_of() { local p; for p in $(pgrep -x vmctld); do grep -qzxF "VMCTL_DATA=$1" "/proc/$p/environ" 2>/dev/null && echo "$p"; done; }
stop() {
	local p
	p=$(pids_of "$1")
	[ -n "$p" ] || return 0
	# shellcheck disable=SC2086
	kill $p 2>/dev/null
	for _ in $(seq 50); do [ -z "$(pids_of "$1")" ] && return 0; sleep 0.1; done
	# shellcheck disable=SC2046
	kill -9 $(pids_of "$1") 2>/dev/null
}
cleanup() {
	local d
	for d in "$TMP"/*/; do [ -d "$d" ] && stop "${d%/}"; done
	rm -rf "$TMP"
}
trap cleanup EXIT
vm() { local v=$1 d=$2; shift 2; VMCTL_DATA=$d "${BIN[$v]}/bin/vmctl" "$@"; }

declare -A fresh cold lists restarts
for ((i = 0; i < N; i++)); do
	for v in before after; do
		d=$TMP/start-$v
		mkdir -p "$d"
		t=$(now); vm $v "$d" version >/dev/null; fresh[$v]+="$(ms_since "$t") "
		stop "$d"
		t=$(now); vm $v "$d" version >/dev/null; cold[$v]+="$(ms_since "$t") "
		stop "$d"
		rm -rf "$d"
	done
done
for v in before after; do
	echo "$v: first start, fresh data folder (makes the key pair): $(echo "${fresh[$v]}" | median) ms [${fresh[$v]}]"
	echo "$v: cold start, key pair present: $(echo "${cold[$v]}" | median) ms [${cold[$v]}]"
done

for v in before after; do
	mkdir -p "$TMP/list-$v"
	"$BENCH" registry "$TMP/list-$v" 1000
	vm $v "$TMP/list-$v" list >/dev/null
done
for ((i = 0; i < BLOCKS; i++)); do
	for v in before after; do
		lists[$v]+="$(VMCTL_DATA=$TMP/list-$v "$BENCH" time --repeat 10 --warmup 2 -- "${BIN[$v]}/bin/vmctl" list | awk '{ print $1 }') "
	done
done
for v in before after; do
	echo "$v: vmctl list, 1000 instances, p50 of 10 per block: ${lists[$v]} ms"
	stop "$TMP/list-$v"
done

for v in before after; do
	mkdir -p "$TMP/restart-$v"
	vm $v "$TMP/restart-$v" list >/dev/null
done
for ((i = 0; i < RESTARTS; i++)); do
	sleep 31
	for v in before after; do
		d=$TMP/restart-$v b=$(broker_of "$d") h=$(pgrep -P "$(broker_of "$d")" -x vmctl-qemu-help)
		[ -n "$h" ] || { echo "$v: no helper to kill" >&2; continue; }
		t=$(now)
		kill -KILL "$h"
		for _ in $(seq 3000); do
			nh=$(pgrep -P "$b" -x vmctl-qemu-help)
			[ -n "$nh" ] && [ "$nh" != "$h" ] && vm $v "$d" list 2>&1 | grep -q 'No instances' && break
			sleep 0.01
		done
		restarts[$v]+="$(ms_since "$t") "
	done
done
for v in before after; do
	echo "$v: helper restart after SIGKILL, up 31 s, 0 VMs: ${restarts[$v]} ms"
done
