#!/usr/bin/env bash
# What the tests could leave behind on this machine: their daemons and
# guests, network interfaces, mounts and temporary folders.
#
#   tools/leftovers.sh snapshot FILE   record what exists now
#   tools/leftovers.sh check FILE      print what exists now but not in FILE;
#                                      exit 1 if there is any
set -uo pipefail

state() {
	ps -eo pid=,comm= | awk '$2 ~ /^(dnsmasq|libvirtd|virtlogd|qemu-system-.*|vmctld|vmctl-.*|sshd|lxd|lxc|udhcpc|sftp-server)$/ { print "process " $1 " " $2 }'
	ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print "interface " $2 }'
	awk '{ print "mount " $2 }' /proc/self/mounts
	for d in "${TMPDIR:-/tmp}"/vmctl-e2e.* "${TMPDIR:-/tmp}"/vmctl-lv.* "${TMPDIR:-/tmp}"/vmctl-lxd.*; do
		[ -e "$d" ] && echo "folder $d"
	done
}

case ${1:-} in
snapshot)
	state | sort -u >"$2"
	;;
check)
	new=$(state | sort -u | comm -13 "$2" -)
	if [ -n "$new" ]; then
		echo "left behind by the tests:"
		printf '  %s\n' "$new"
		exit 1
	fi
	;;
*)
	echo "usage: $0 snapshot|check FILE" >&2
	exit 2
	;;
esac
