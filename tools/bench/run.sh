#!/usr/bin/env bash
# Run the benchmarks of docs/performance.md and print one Markdown table:
# each figure beside its reference, both measured in this run.
#
#   tools/bench/run.sh [--build DIR] [SECTION...]
#
# Sections (default: all, in this order): proto registry list memory cli download launch
# restart switch
# DIR is a CMake build tree (-DCMAKE_BUILD_TYPE=Release) holding bin/vmctl,
# bin/vmctld, libexec/vmctl/ and tools/bench/ (default: build-bench beside
# this script's source tree). Everything runs in private temporary folders:
# its own VMCTL_DATA per measurement, and its own unprivileged libvirtd
# (session mode) so that a system libvirtd, if any, is left alone.
#
# Environment:
#   BENCH_IMAGES    fast test image folder (default /var/cache/vmctl-test-images)
#   BENCH_REPEAT    repetitions of each timed command (default 20)
#   BENCH_VMS       running VMs during the helper-restart figure (default 2)
#   BENCH_LAUNCH_ROUNDS  launches of each kind, fastest reported (default 2)
#   BENCH_RESET_WAIT  seconds the helper runs before it is killed (default 31)
#   BENCH_KEEP=1    keep the temporary folder for a post-mortem
set -u

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$SRC/build-bench
SECTIONS=()
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$(cd "$2" && pwd) || exit 2; shift 2 ;;
	-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) SECTIONS+=("$1"); shift ;;
	esac
done
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=(proto registry list memory cli download launch restart switch)

BENCH=$BUILD/tools/bench/vmctl-bench
BENCH_HELPER=$BUILD/tools/bench/vmctl-bench-helper
VMCTL=$BUILD/bin/vmctl
IMAGES=${BENCH_IMAGES:-/var/cache/vmctl-test-images}
REPEAT=${BENCH_REPEAT:-20}
NVMS=${BENCH_VMS:-2}
for f in "$BENCH" "$BENCH_HELPER"; do
	[ -x "$f" ] || { echo "run.sh: $f is not built (cmake --build $BUILD)" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/vmctl-bench.XXXXXX)
chmod 755 "$TMP"
LV_PID= LOGD_PID=

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---- table ----

row() { # figure ours reference ratio target met
	printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}
skip() { # figure why
	row "$1" "not measured: $2" "--" "--" "--" "--"
}
# ratio A B -> "A/B" with two decimals and an x
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "--" }'; }
# le A B -> yes when A <= B
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "yes" : "no" }'; }
# p50 in ms of COMMAND run REPEAT times
p50_ms() { "$BENCH" time --repeat "$REPEAT" --warmup 2 -- "$@" | awk '{ print $1 }'; }
now() { date +%s.%N; }
elapsed_ms() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# ---- vmctl: one private data folder at a time ----

# Processes whose environment names data folder $1 (broker, helpers) or
# whose command line mentions it (QEMU).
data_pids() {
	{
		grep -lzxF "VMCTL_DATA=$1" /proc/[0-9]*/environ
		grep -lzF "$1/" /proc/[0-9]*/cmdline
	} 2>/dev/null | cut -d/ -f3 | sort -un | grep -vx "$$"
}
data_pids_named() { # data comm
	local p
	for p in $(data_pids "$1"); do
		[ "$({ cat "/proc/$p/comm"; } 2>/dev/null)" = "$2" ] && echo "$p"
	done
}
broker_pid() { data_pids_named "$1" vmctld | head -1; }
helper_pid() { data_pids_named "$1" "$2" | head -1; } # data comm (cut at 15 chars)
vmctl_in() { local d=$1; shift; VMCTL_DATA=$d "$VMCTL" "$@"; }

# Stop everything of data folder $1: only vmctl's own processes and QEMU.
data_stop() {
	local pids p
	pids=$(for p in $(data_pids "$1"); do
		case $({ cat "/proc/$p/comm"; } 2>/dev/null) in
		vmctld | vmctl-* | qemu-*) echo "$p" ;;
		esac
	done)
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	for _ in $(seq 1 50); do
		pids=$(for p in $pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done)
		[ -n "$pids" ] || return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
}

new_data() { # name -> path of a fresh data folder
	local d=$TMP/data-$1
	rm -rf "$d"
	mkdir -p "$d"
	echo "$d"
}

# ---- a private libvirtd (session mode, as nobody) ----

LV_HOME=$TMP/libvirt
LV_URI=qemu:///session
# Run a command as nobody in the private libvirt environment.
LV_RUN=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$LV_HOME" USER=nobody
	XDG_RUNTIME_DIR="$LV_HOME/run" XDG_CONFIG_HOME="$LV_HOME/config"
	XDG_CACHE_HOME="$LV_HOME/cache"
	setpriv --reuid=65534 --regid=65534 --clear-groups --)
virsh_cmd() { "${LV_RUN[@]}" virsh -q -c "$LV_URI" "$@"; }

lv_start() {
	[ -n "$LV_PID" ] && return 0
	command -v libvirtd >/dev/null && command -v virsh >/dev/null || return 1
	mkdir -p "$LV_HOME/run" "$LV_HOME/config" "$LV_HOME/cache"
	chown -R 65534:65534 "$LV_HOME"
	chmod 700 "$LV_HOME/run"
	"${LV_RUN[@]}" libvirtd --timeout 0 >"$TMP/libvirtd.log" 2>&1 &
	LV_PID=$!
	for _ in $(seq 1 300); do
		virsh_cmd uri >/dev/null 2>&1 && { log "libvirtd up (pid $LV_PID)"; return 0; }
		kill -0 "$LV_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "libvirtd did not start; its log:"; tail -5 "$TMP/libvirtd.log" >&2
	LV_PID=
	return 1
}

lv_stop() {
	local p
	[ -n "$LV_PID" ] || return 0
	for p in $(virsh_cmd list --name 2>/dev/null); do virsh_cmd destroy "$p" >/dev/null 2>&1; done
	kill -TERM "$LV_PID" 2>/dev/null
	wait "$LV_PID" 2>/dev/null
	# virtlogd is started by libvirtd in session mode; it is ours too.
	for p in $(pgrep -u 65534 -x virtlogd); do
		grep -qzxF "XDG_RUNTIME_DIR=$LV_HOME/run" "/proc/$p/environ" 2>/dev/null && kill -TERM "$p"
	done
	LV_PID=
}

# Make the set of defined domains exactly bench-lv-00000 .. N-1. One virsh
# reads all the commands: a virsh per domain would take minutes.
lv_define_n() {
	local n=$1 have i
	have=$(virsh_cmd list --all --name | grep -c '^bench-lv-')
	{
		for ((i = n; i < have; i++)); do printf 'undefine bench-lv-%05d\n' "$i"; done
		for ((i = have; i < n; i++)); do
			sed "s/@NAME@/$(printf 'bench-lv-%05d' "$i")/" >"$LV_HOME/dom-$i.xml" <<'EOF'
<domain type='qemu'>
  <name>@NAME@</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/nonexistent/bench.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
			echo "define $LV_HOME/dom-$i.xml"
		done
	} >"$LV_HOME/define.cmds"
	chown 65534:65534 "$LV_HOME"/dom-*.xml 2>/dev/null
	"${LV_RUN[@]}" virsh -q -c "$LV_URI" <"$LV_HOME/define.cmds" >/dev/null || return 1
	rm -f "$LV_HOME"/dom-*.xml
	[ "$(virsh_cmd list --all --name | grep -c '^bench-lv-')" = "$n" ]
}

cleanup() {
	local d
	trap - EXIT
	lv_stop
	for d in "$TMP"/data-*; do [ -d "$d" ] && data_stop "$d"; done
	[ -n "$PLAIN_PID" ] && kill "$PLAIN_PID" 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- sections ----

sec_proto() {
	local cpus
	cpus=$(nproc)
	"$BENCH" rtt --helper "$BENCH_HELPER" --cpus 0,0
	if [ "$cpus" -gt 1 ]; then
		"$BENCH" rtt --helper "$BENCH_HELPER" --cpus 0,1
	else
		skip "helper round trip, two cores" "one CPU"
	fi
	"$BENCH" throughput --helper "$BENCH_HELPER"
}

# CPU time of registry_save() and registry_load() of 1,000 records, against
# writing and reading the same bytes (the budget the registry was made to).
sec_registry() {
	mkdir -p "$TMP/registry-io"
	"$BENCH" registry-io "$TMP/registry-io"
	rm -rf "$TMP/registry-io"
}

# vmctl list with N instances against virsh list --all with N domains.
LIST_MS=() VIRSH_MS=()
sec_list() {
	local n d t v have_lv=0 i
	[ -x "$VMCTL" ] || { skip "vmctl list" "vmctl is not built"; return; }
	lv_start && have_lv=1
	for n in 1 100 1000; do
		d=$(new_data "list-$n")
		"$BENCH" registry "$d" "$n"
		vmctl_in "$d" version >/dev/null 2>&1 || { skip "vmctl list, $n instances" "the broker did not start"; continue; }
		t=$(VMCTL_DATA=$d p50_ms "$VMCTL" list)
		if [ "$n" = 1000 ]; then
			# Keep this broker for the memory figure.
			MEM_DATA=$d
		else
			data_stop "$d"
		fi
		v=
		if [ $have_lv = 1 ] && lv_define_n "$n"; then
			# The timer runs as nobody too, so that only virsh is timed.
			v=$("${LV_RUN[@]}" "$BENCH" time --repeat "$REPEAT" -- \
				virsh -q -c "$LV_URI" list --all | awk '{ print $1 }')
		fi
		LIST_MS+=("$t") VIRSH_MS+=("${v:-0}")
		if [ -n "$v" ]; then
			if [ "$n" = 1000 ]; then
				row "vmctl list, $n instances" "$t ms" "$v ms (virsh list --all)" "$(ratio "$t" "$v")" "<= 0.33x" "$(le "$t" "$(awk -v v="$v" 'BEGIN { print v / 3 }')")"
			else
				row "vmctl list, $n instances" "$t ms" "$v ms (virsh list --all)" "$(ratio "$t" "$v")" "--" "--"
			fi
		else
			row "vmctl list, $n instances" "$t ms" "not measured: no libvirtd" "--" "--" "--"
		fi
	done
	# Cost per instance: the slope between 1 and 100, and between 100 and 1000.
	if [ ${#LIST_MS[@]} = 3 ]; then
		for i in 1 2; do
			local n0=$((i == 1 ? 1 : 100)) n1=$((i == 1 ? 100 : 1000))
			t=$(awk -v a="${LIST_MS[i - 1]}" -v b="${LIST_MS[i]}" -v n0=$n0 -v n1=$n1 'BEGIN { printf "%.1f", (b - a) * 1000 / (n1 - n0) }')
			v=$(awk -v a="${VIRSH_MS[i - 1]}" -v b="${VIRSH_MS[i]}" -v n0=$n0 -v n1=$n1 'BEGIN { printf "%.1f", (b - a) * 1000 / (n1 - n0) }')
			row "list cost per instance, $n0 to $n1" "$t us" "$v us (virsh)" "$(ratio "$t" "$v")" "--" "--"
		done
	fi
}

# vmctl version with the broker up, and from cold (no broker: it starts one).
sec_cli() {
	local d t r cold=() i t0 med
	[ -x "$VMCTL" ] || { skip "CLI round trip" "vmctl is not built"; return; }
	d=$(new_data cli)
	vmctl_in "$d" version >/dev/null 2>&1 || { skip "CLI round trip" "the broker did not start"; return; }
	t=$(VMCTL_DATA=$d p50_ms "$VMCTL" version)
	r=$(p50_ms /bin/true)
	row "vmctl version, broker up" "$t ms" "$r ms (fork+exec of /bin/true)" "$(ratio "$t" "$r")" "--" "--"
	for i in $(seq 1 5); do
		data_stop "$d"
		rm -f "$d/vmctld.sock"
		t0=$(now)
		vmctl_in "$d" version >/dev/null 2>&1 || { skip "vmctl version, cold" "the broker did not start"; return; }
		cold+=("$(elapsed_ms "$t0")")
	done
	data_stop "$d"
	med=$(printf '%s\n' "${cold[@]}" | sort -n | sed -n 3p)
	row "vmctl version, cold (starts the broker)" "$med ms" "$t ms (broker up)" "$(ratio "$med" "$t")" "--" "--"
}

# Peak RSS of the broker and its helper holding 1000 instances, against
# libvirtd holding 1000 domains.
MEM_DATA=
sec_memory() {
	local b h bk hk lk
	if [ -z "$MEM_DATA" ]; then
		MEM_DATA=$(new_data list-1000)
		"$BENCH" registry "$MEM_DATA" 1000
		vmctl_in "$MEM_DATA" version >/dev/null 2>&1
		for _ in 1 2 3; do vmctl_in "$MEM_DATA" list >/dev/null 2>&1; done
	fi
	b=$(broker_pid "$MEM_DATA")
	h=$(helper_pid "$MEM_DATA" vmctl-qemu-help)
	[ -n "$b" ] || { skip "peak RSS, vmctld" "no broker"; return; }
	bk=$(hwm_kib "$b") hk=$(hwm_kib "$h")
	lk=
	if lv_start && lv_define_n 1000; then
		virsh_cmd list --all >/dev/null
		lk=$(hwm_kib "$LV_PID")
	fi
	if [ -n "$lk" ]; then
		row "peak RSS, vmctld, 1000 instances" "$(mib "$bk") (anon now $(mib "$(anon_kib "$b")"))" "$(mib "$lk") (libvirtd, 1000 domains)" "$(ratio "$bk" "$lk")" "< 8 MiB" "$(le "$bk" 8191)"
		row "peak RSS, qemu helper, 1000 instances" "$(mib "$hk") (anon now $(mib "$(anon_kib "$h")"))" "$(mib "$lk") (libvirtd, 1000 domains)" "$(ratio "$hk" "$lk")" "< 6 MiB" "$(le "$hk" 6143)"
	else
		row "peak RSS, vmctld, 1000 instances" "$(mib "$bk") (anon now $(mib "$(anon_kib "$b")"))" "not measured: no libvirtd" "--" "< 8 MiB" "$(le "$bk" 8191)"
		row "peak RSS, qemu helper, 1000 instances" "$(mib "$hk") (anon now $(mib "$(anon_kib "$h")"))" "not measured: no libvirtd" "--" "< 6 MiB" "$(le "$hk" 6143)"
	fi
	if command -v lxd >/dev/null; then
		skip "peak RSS, lxd" "lxd is installed but not driven by this script"
	else
		skip "peak RSS, lxd (reference)" "the lxd package is not installed"
	fi
	data_stop "$MEM_DATA"
	MEM_DATA=
}

# ---- launch to SSH-ready ----

# The broker's own ssh options (core/vmctld/launch.c), so that the login
# costs both sides the same.
SSH_OPTS=(-F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no
	-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=15)
# One look at 127.0.0.1:PORT for sshd's banner, waiting up to WAIT s, through
# bash's /dev/tcp (no process): 0 greeted, 1 refused or closed, 2 silent.
ssh_banner() { # port wait
	local fd line rc=1
	{ exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	if IFS= read -r -t "$2" line <&"$fd"; then
		case $line in SSH-*) rc=0 ;; esac
	elif [ $? -gt 128 ]; then
		rc=2
	fi
	exec {fd}<&-
	return "$rc"
}
# Wait until `ssh ubuntu@127.0.0.1 -p PORT true` works with key $2 (limit
# s), probing as the broker does (core/vmctld/launch.c, ssh_wait_*), so that
# both sides pay the same for probing: a look at the port every 0.25 s (the
# banner waited for 2 s at first, 0.5 s longer after each silence; once the
# guest refused a connection, silence means a slow sshd: twice as long each
# time, up to 30 s), the ssh login only once sshd greeted, and 1 s after a
# login that failed. The broker's one login also checks cloud-init; that
# check is part of what vmctl costs.
ssh_wait() { # port key limit
	local start=$SECONDS wait=2 refused=0 rc
	while [ $((SECONDS - start)) -lt "$3" ]; do
		ssh_banner "$1" "$wait"
		rc=$?
		if [ "$rc" = 0 ]; then
			ssh -i "$2" -p "$1" "${SSH_OPTS[@]}" ubuntu@127.0.0.1 true </dev/null 2>/dev/null && return 0
			sleep 1
			continue
		fi
		if [ "$rc" = 1 ]; then
			refused=1 wait=2
		elif [ "$refused" = 1 ]; then
			wait=$(awk -v w="$wait" 'BEGIN { w *= 2; print (w > 30) ? 30 : w }')
		else
			wait=$(awk -v w="$wait" 'BEGIN { w += 0.5; print (w > 30) ? 30 : w }')
		fi
		sleep 0.25
	done
	return 1
}
free_port() { # a TCP port nothing listens on
	local p
	for p in $(shuf -i 20000-40000 -n 50); do
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}
qemu_pids_of() { # data
	local p
	for p in $(data_pids "$1"); do
		case $({ cat "/proc/$p/comm"; } 2>/dev/null) in qemu-system-*) echo "$p" ;; esac
	done
}

LAUNCH_DATA= PLAIN_PID=
sec_launch() {
	local d key r t0 t a i f base inst pid m= smp= P V newport args=()
	local vm=() plain=() virsh=() rounds=${BENCH_LAUNCH_ROUNDS:-2}
	[ -x "$VMCTL" ] || { skip "launch to SSH-ready" "vmctl is not built"; return; }
	[ -f "$IMAGES/fast.qcow2" ] || { skip "launch to SSH-ready" "no fast image in $IMAGES (tools/build-image.sh)"; return; }
	d=$(new_data launch)
	LAUNCH_DATA=$d
	key=$d/ssh/id_ed25519
	vmctl_in "$d" version >/dev/null 2>&1 || { skip "launch to SSH-ready" "the broker did not start"; return; }
	lv_start || true
	# Rounds alternate the three ways, so that a change in the machine's
	# load hits them alike; the fastest of each is reported.
	for ((r = 0; r < rounds; r++)); do
		# vmctl launch returns once SSH answers.
		t0=$(now)
		vmctl_in "$d" launch "$IMAGES/fast.qcow2" --name "bl$r" --timeout 600 >/dev/null 2>"$TMP/launch.err" ||
			{ skip "launch to SSH-ready" "vmctl launch failed: $(tail -1 "$TMP/launch.err")"; return; }
		vm+=("$(elapsed_ms "$t0")")
		vmctl_in "$d" exec "bl$r" -- true >/dev/null 2>&1 || log "warning: vmctl exec after launch failed"

		# The same QEMU command line, on a fresh overlay of the same base
		# disk and a copy of the same seed, with another forwarded port.
		pid=$(qemu_pids_of "$d" | head -1)
		inst=$d/scopes/qemu/instances/bl$r
		mapfile -d '' args <"/proc/$pid/cmdline"
		vmctl_in "$d" stop "bl$r" >/dev/null 2>&1
		P=$TMP/plain$r
		mkdir -p "$P"
		for f in "$inst"/*; do
			case $f in
			*.qcow2)
				base=$(qemu-img info -U --output=json "$f" | sed -n 's/.*"backing-filename": "\(.*\)",*/\1/p' | head -1)
				qemu-img create -q -f qcow2 -F qcow2 -b "${base:-$IMAGES/fast.qcow2}" "$P/${f##*/}" ;;
			*.iso | *seed*) cp "$f" "$P/" ;;
			esac
		done
		newport=$(free_port)
		for i in "${!args[@]}"; do
			a=${args[i]//$inst/$P}
			a=$(printf '%s' "$a" | sed -E "s/hostfwd=tcp:127.0.0.1:[0-9]+-:22/hostfwd=tcp:127.0.0.1:$newport-:22/")
			args[i]=$a
			[ "$i" -gt 0 ] && [ "${args[i - 1]}" = "-m" ] && m=$a
			[ "$i" -gt 0 ] && [ "${args[i - 1]}" = "-smp" ] && smp=$a
		done
		printf '%q ' "${args[@]}" >"$TMP/plain.cmdline"
		t0=$(now)
		if "${args[@]}" >/dev/null 2>"$TMP/plain.err" && ssh_wait "$newport" "$key" 600; then
			plain+=("$(elapsed_ms "$t0")")
		fi
		PLAIN_PID=$(cat "$P"/*pid* 2>/dev/null | head -1)
		[ -n "$PLAIN_PID" ] && kill "$PLAIN_PID" 2>/dev/null
		PLAIN_PID=

		# virsh start of a domain with the same kernel, disk, seed, CPUs
		# and memory.
		[ -n "$LV_PID" ] || continue
		V=$LV_HOME/vm$r
		mkdir -p "$V"
		for f in "$P"/*; do
			case $f in
			*.qcow2) qemu-img create -q -f qcow2 -F qcow2 -b "${base:-$IMAGES/fast.qcow2}" "$V/disk.qcow2" ;;
			*.iso | *seed*) cp "$f" "$V/seed.img" ;;
			esac
		done
		newport=$(free_port)
		cat >"$V/dom.xml" <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>bench-launch-$r</name>
  <memory unit='MiB'>${m//[!0-9]/}</memory>
  <vcpu>${smp%%[!0-9]*}</vcpu>
  <cpu mode='maximum'/>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$IMAGES/fast.vmlinuz</kernel>
    <initrd>$IMAGES/fast.initrd</initrd>
    <cmdline>$(cat "$IMAGES/fast.cmdline")</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$V/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$V/seed.img'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <serial type='file'><source path='$V/console.log'/></serial>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=bn0,hostfwd=tcp:127.0.0.1:$newport-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=bn0,bus=pci.0,addr=0x10'/>
  </qemu:commandline>
</domain>
EOF
		chown -R 65534:65534 "$V"
		if virsh_cmd define "$V/dom.xml" >/dev/null 2>"$TMP/virsh.err"; then
			t0=$(now)
			if virsh_cmd start "bench-launch-$r" >/dev/null 2>>"$TMP/virsh.err" && ssh_wait "$newport" "$key" 600; then
				virsh+=("$(elapsed_ms "$t0")")
			fi
			virsh_cmd destroy "bench-launch-$r" >/dev/null 2>&1
			virsh_cmd undefine "bench-launch-$r" >/dev/null 2>&1
		fi
	done
	log "launch ms: vmctl ${vm[*]}; plain qemu ${plain[*]:-}; virsh ${virsh[*]:-}"
	local tv tp tl
	tv=$(printf '%s\n' "${vm[@]}" | sort -n | head -1)
	if [ ${#plain[@]} -gt 0 ]; then
		tp=$(printf '%s\n' "${plain[@]}" | sort -n | head -1)
		row "launch to SSH-ready, fast image (best of $rounds)" "$tv ms" "$tp ms (same qemu command line)" "$(ratio "$tv" "$tp")" "overhead < 5%" "$(le "$tv" "$(awk -v p="$tp" 'BEGIN { print p * 1.05 }')")"
	else
		row "launch to SSH-ready, fast image" "$tv ms" "not measured: plain qemu failed ($(tail -1 "$TMP/plain.err"))" "--" "overhead < 5%" "--"
	fi
	if [ ${#virsh[@]} -gt 0 ]; then
		tl=$(printf '%s\n' "${virsh[@]}" | sort -n | head -1)
		row "launch to SSH-ready, fast image (best of $rounds)" "$tv ms" "$tl ms (virsh start)" "$(ratio "$tv" "$tl")" "--" "--"
	else
		skip "virsh start to SSH-ready" "$(tail -1 "$TMP/virsh.err" 2>/dev/null || echo "no libvirtd")"
	fi
}

# ---- helper restart after SIGKILL ----

# ms from SIGKILL of the helper until `vmctl list` shows every instance of
# data folder $1 running again, through a new helper.
restart_ms() { # data nrunning
	local d=$1 n=$2 b h t0 nh out
	b=$(broker_pid "$d")
	h=$(pgrep -P "$b" -x vmctl-qemu-help)
	[ -n "$h" ] || return 1
	t0=$(now)
	kill -KILL "$h"
	for _ in $(seq 1 3000); do
		nh=$(pgrep -P "$b" -x vmctl-qemu-help)
		if [ -n "$nh" ] && [ "$nh" != "$h" ]; then
			out=$(vmctl_in "$d" list 2>&1) &&
				! printf '%s\n' "$out" | grep -qiE 'warning|unknown' &&
				[ "$(printf '%s\n' "$out" | grep -c ' Running ')" = "$n" ] &&
				{ elapsed_ms "$t0"; return 0; }
		fi
		sleep 0.01
	done
	return 1
}

# A helper that was up BACKOFF_RESET_S (30 s) is restarted at once; one
# that dies again soon after waits BACKOFF_FIRST_MS (100 ms), doubling.
RESET_WAIT=${BENCH_RESET_WAIT:-31}
sec_restart() {
	local d t0 t_loop t_n i
	[ -x "$VMCTL" ] || { skip "helper restart" "vmctl is not built"; return; }
	d=$(new_data restart0)
	vmctl_in "$d" version >/dev/null 2>&1 || { skip "helper restart" "the broker did not start"; return; }
	vmctl_in "$d" list >/dev/null 2>&1
	log "letting the helper run ${RESET_WAIT} s (BACKOFF_RESET_S) before killing it"
	sleep "$RESET_WAIT"
	t0=$(restart_ms "$d" 0) || { skip "helper restart" "the helper did not come back"; data_stop "$d"; return; }
	t_loop=$(restart_ms "$d" 0) || t_loop=
	data_stop "$d"
	row "helper restart after SIGKILL, 0 VMs, up ${RESET_WAIT} s" "$t0 ms" "--" "--" "--" "--"
	[ -n "$t_loop" ] && row "helper restart after SIGKILL, 0 VMs, killed again at once (backoff)" "$t_loop ms" "$t0 ms (up ${RESET_WAIT} s)" "$(ratio "$t_loop" "$t0")" "--" "--"
	d=${LAUNCH_DATA:-}
	[ -n "$d" ] || return 0
	# The launch section left stopped instances bl0, bl1, ...: start NVMS.
	# Re-attaching is about the QEMU processes: a guest still booting counts.
	for ((i = 0; i < NVMS; i++)); do
		vmctl_in "$d" start "bl$i" --timeout 20 >/dev/null 2>&1 ||
			vmctl_in "$d" launch "$IMAGES/fast.qcow2" --name "bl$i" --timeout 20 >/dev/null 2>&1
	done
	if [ "$(vmctl_in "$d" list 2>/dev/null | grep -c ' Running ')" != "$NVMS" ]; then
		skip "helper restart with $NVMS VMs" "could not start $NVMS VMs"
		return
	fi
	t_n=$(restart_ms "$d" "$NVMS") || { skip "helper restart with $NVMS VMs" "the VMs did not show running again"; return; }
	row "helper restart after SIGKILL, $NVMS VMs re-attached" "$t_n ms" "$t0 ms (0 VMs)" "$(ratio "$t_n" "$t0")" "--" "--"
}

# ---- scope switch ----

sec_switch() {
	local d t0 to_lv to_q
	[ -x "$VMCTL" ] || { skip "scope switch" "vmctl is not built"; return; }
	d=$(new_data switch)
	vmctl_in "$d" version >/dev/null 2>&1 || { skip "scope switch" "the broker did not start"; return; }
	t0=$(now)
	vmctl_in "$d" set local.driver=libvirt >/dev/null 2>"$TMP/switch.err" || { skip "scope switch" "$(tail -1 "$TMP/switch.err")"; data_stop "$d"; return; }
	to_lv=$(elapsed_ms "$t0")
	t0=$(now)
	vmctl_in "$d" set local.driver=qemu >/dev/null 2>"$TMP/switch.err" || { skip "scope switch back" "$(tail -1 "$TMP/switch.err")"; data_stop "$d"; return; }
	to_q=$(elapsed_ms "$t0")
	local t_get
	t_get=$(VMCTL_DATA=$d p50_ms "$VMCTL" get local.driver)
	row "scope switch qemu -> libvirt" "$to_lv ms" "$t_get ms (vmctl get)" "$(ratio "$to_lv" "$t_get")" "--" "--"
	row "scope switch libvirt -> qemu" "$to_q ms" "$t_get ms (vmctl get)" "$(ratio "$to_q" "$t_get")" "--" "--"
	data_stop "$d"
}

# ---- image download ----

# The broker's download path (vmctl-bench-fetch: libcurl multi on libev,
# SHA-256 while writing) against `curl -o` of the same file from the same
# loopback server; the fastest of 3 each.
sec_download() {
	local fetch=$BUILD/tools/bench/vmctl-bench-fetch www port i out ours=0 ref=0 t bytes
	[ -x "$fetch" ] || { skip "image download" "vmctl-bench-fetch is not built"; return; }
	www=$TMP/www
	mkdir -p "$www"
	head -c $((512 << 20)) /dev/urandom >"$www/disk.img"
	python3 "$SRC/tools/test-http-server.py" --root "$www" --port-file "$TMP/http.port" \
		--log "$TMP/http.log" >/dev/null 2>&1 &
	local server=$!
	for i in $(seq 50); do [ -s "$TMP/http.port" ] && break; sleep 0.1; done
	port=$(cat "$TMP/http.port" 2>/dev/null)
	[ -n "$port" ] || { skip "image download" "the HTTP server did not start"; kill $server; return; }
	for i in 1 2 3; do
		rm -rf "$TMP/cache"
		out=$("$fetch" "http://127.0.0.1:$port/disk.img" "$TMP/cache") || { skip "image download" "the fetch failed"; kill $server; return; }
		bytes=${out% *} t=${out#* }
		ours=$(awk -v b="$bytes" -v t="$t" -v m="$ours" 'BEGIN { r = b / t / 1048576; print (r > m) ? r : m }')
		rm -f "$TMP/curl.out"
		t=$( { /usr/bin/time -f %e curl -s -o "$TMP/curl.out" "http://127.0.0.1:$port/disk.img"; } 2>&1 )
		ref=$(awk -v b="$bytes" -v t="$t" -v m="$ref" 'BEGIN { r = (t > 0) ? b / t / 1048576 : 0; print (r > m) ? r : m }')
	done
	kill $server 2>/dev/null
	rm -rf "$TMP/cache" "$TMP/curl.out" "$www"
	row "image download, 512 MiB over loopback (verified, cached)" \
		"$(printf '%.0f MiB/s' "$ours")" "$(printf '%.0f MiB/s' "$ref") (curl -o)" \
		"$(ratio "$ours" "$ref")" "--" "--"
}

main() {
	local s
	log "build $BUILD; temporary folder $TMP; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "| figure | vmctl | reference (same run) | ratio | target | met |"
	echo "|---|---|---|---|---|---|"
	for s in "${SECTIONS[@]}"; do
		if declare -F "sec_$s" >/dev/null; then
			log "section $s"
			"sec_$s"
		else
			echo "run.sh: unknown section $s" >&2
		fi
	done
}

main
