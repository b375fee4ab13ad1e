# Shared by tests/e2e/test-lxd-*.sh: a private LXD daemon for
# the test, started as its child (no systemd here), in mount and network
# namespaces of the test's own, so that its bridge, its dnsmasq, its
# containers and their addresses are the test's alone; and stopped at the
# end, passed or failed, with every process of the namespace killed. The
# test FAILS (never skips) when LXD cannot start.
#
# A test sources this first (it re-executes the test in its namespaces),
# then tests/e2e/lib.sh if it drives vmctl, then calls lxd_start.
#
# After lxd_start: LXD_DIR (exported: `lxc` talks to the private daemon),
# LXD_SOCKET, LXD_BRIDGE, LXD_IMAGE (the test container image, made by
# tools/build-lxd-image.sh), lxd_log, lxd_fail, lxd_namespace_pids,
# lxd_daemon_kill and lxd_daemon_run (the daemon away and back).
# E2E_KEEP=1 keeps the daemon and its folder for a post-mortem.

set -u

LXD_NAME=$(basename "$0" .sh)
lxd_log() { echo "[$LXD_NAME $(date +%H:%M:%S)] $*" >&2; }
lxd_fail() {
	lxd_log "FAIL: $*"
	exit 1
}

if [ -z "${LXD_IN_NAMESPACE:-}" ]; then
	[ "$(id -u)" -eq 0 ] || lxd_fail "must run as root (a private LXD daemon, namespaces)"
	command -v unshare >/dev/null || lxd_fail "unshare is missing (package util-linux)"
	export LXD_IN_NAMESPACE=1
	exec unshare --mount --net --propagation private -- bash "$0" "$@"
fi

for t in lxd lxc curl ip; do
	command -v "$t" >/dev/null || lxd_fail "$t is missing; run tools/install-deps.sh"
done
LXD_IMAGE=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}/lxd.tar
[ -s "$LXD_IMAGE" ] || lxd_fail "$LXD_IMAGE is missing (run tools/build-lxd-image.sh)"

LXD_RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-lxd.XXXXXX")
LXD_DIR=$LXD_RUN/lxd
LXD_SOCKET=$LXD_DIR/unix.socket
LXD_BRIDGE=vmctlbr0
export LXD_DIR LXD_SOCKET LXD_BRIDGE LXD_IMAGE
# The containers' root (an unprivileged uid) must traverse it.
chmod 711 "$LXD_RUN"
mkdir -p "$LXD_DIR"

# Every process in the test's network namespace but the test's own shell
# and its subshells: LXD, its dnsmasq and forkproxy, the containers' init
# and everything under them, helpers, ssh.
lxd_namespace_pids() {
	local ns p
	ns=$(readlink /proc/$$/ns/net)
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" != $$ ] && [ "$p" != "$BASHPID" ] || continue
		[ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$ns" ] || continue
		case $(cat "/proc/$p/comm" 2>/dev/null) in
		bash | sleep | timeout | cat | readlink) ;;
		*) echo "$p" ;;
		esac
	done
}

lxd_cleanup() {
	local rc=$? left p
	trap - EXIT
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		lxd_log "keeping $LXD_RUN and the daemon (in namespaces of pid $$)"
		exit "$rc"
	fi
	# The test's own cleanup first (broker, helper, data folder), then LXD.
	if declare -F e2e_stop_all >/dev/null; then
		e2e_stop_all
	fi
	if [ -S "$LXD_SOCKET" ]; then
		for c in $(lxc list --format csv -c n 2>/dev/null); do
			lxc delete --force "$c" >/dev/null 2>&1
		done
		timeout 30 lxd shutdown >/dev/null 2>&1
	fi
	[ -n "${LXD_PID:-}" ] && kill "$LXD_PID" 2>/dev/null
	# lxd shutdown leaves its dnsmasq running (seen with 5.0.2).
	for p in $(lxd_namespace_pids); do
		kill -KILL "$p" 2>/dev/null
	done
	left=$(lxd_namespace_pids)
	if [ -n "$left" ]; then
		sleep 1
		left=$(lxd_namespace_pids)
	fi
	if [ -n "$left" ]; then
		lxd_log "FAIL: processes of the test survived its cleanup: $(for p in $left; do printf '%s(%s) ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)"
		rc=1
	fi
	# The mounts LXD made live in this mount namespace and go with it.
	umount -R "$LXD_DIR" 2>/dev/null
	for p in $LXD_SUBIDS_BOUND; do
		umount "$p" 2>/dev/null
	done
	rm -rf "$LXD_RUN"
	if declare -F e2e_cleanup >/dev/null; then
		(exit "$rc")
		e2e_cleanup
	fi
	exit "$rc"
}
# lxd_allow_host_ids ID...: let root map the host uids and gids ID into
# containers, as raw.idmap needs (LXC maps them with newuidmap, which
# checks /etc/subuid): copies of /etc/subuid and /etc/subgid with
# root:ID:1 added, bound over them in the test's mount namespace only.
# Before lxd_start.
LXD_SUBIDS_BOUND=
lxd_allow_host_ids() {
	local f id
	for f in subuid subgid; do
		cp "/etc/$f" "$LXD_RUN/$f" || lxd_fail "cannot copy /etc/$f"
		for id in "$@"; do
			echo "root:$id:1" >>"$LXD_RUN/$f"
		done
		mount --bind "$LXD_RUN/$f" "/etc/$f" || lxd_fail "cannot bind $LXD_RUN/$f over /etc/$f"
		LXD_SUBIDS_BOUND="$LXD_SUBIDS_BOUND /etc/$f"
	done
}
# The daemon away and back, its instances left running (SIGKILL: LXC's
# monitors keep the containers; a new daemon takes them up again).
lxd_daemon_kill() {
	kill -KILL "$LXD_PID" 2>/dev/null || lxd_fail "LXD (pid $LXD_PID) is not running"
	wait "$LXD_PID" 2>/dev/null
	LXD_PID=
}
lxd_daemon_run() {
	lxd --group root --logfile "$LXD_RUN/lxd.log" >>"$LXD_RUN/lxd.out" 2>&1 &
	LXD_PID=$!
	timeout 60 lxd waitready ||
		lxd_fail "LXD did not start (lxd waitready failed); $(tail -n 5 "$LXD_RUN/lxd.log" "$LXD_RUN/lxd.out" 2>/dev/null)"
}
lxd_start() {
	trap lxd_cleanup EXIT
	trap 'exit 130' INT TERM

	# LXD looks its bridges up in /sys/class/net: a sysfs of this network
	# namespace, with the host's cgroup hierarchy moved over.
	ip link set lo up || lxd_fail "cannot bring up lo in the test's network namespace"
	mkdir -p "$LXD_RUN/cgroup"
	mount --rbind /sys/fs/cgroup "$LXD_RUN/cgroup" || lxd_fail "cannot bind /sys/fs/cgroup"
	mount -t sysfs vmctl-test-sysfs /sys || lxd_fail "cannot mount a sysfs of the network namespace"
	mount --move "$LXD_RUN/cgroup" /sys/fs/cgroup || lxd_fail "cannot move the cgroup hierarchy back"

	lxd_daemon_run
	lxd init --preseed >"$LXD_RUN/preseed.out" 2>&1 <<-EOF || lxd_fail "lxd init --preseed failed: $(cat "$LXD_RUN/preseed.out")"
		storage_pools:
		- {name: default, driver: dir}
		networks:
		- name: $LXD_BRIDGE
		  type: bridge
		  config: {ipv4.address: 10.99.0.1/24, ipv4.nat: "false", ipv6.address: none}
		profiles:
		- name: default
		  devices:
		    root: {path: /, pool: default, type: disk}
		    eth0: {name: eth0, network: $LXD_BRIDGE, type: nic}
		EOF
	LXD_VERSION=$(lxd --version)
	lxd_log "LXD $LXD_VERSION running (pid $LXD_PID, LXD_DIR $LXD_DIR)"
}
