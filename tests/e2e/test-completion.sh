#!/usr/bin/env bash
# The bash completion (packaging/bash-completion/vmctl), sourced and called
# as bash calls it: commands and aliases, each command's options, option
# values, then instance names, setting keys and driver names from the
# running broker. With no broker running, TAB starts none.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=../../packaging/bash-completion/vmctl
. "$SRC/packaging/bash-completion/vmctl" || fail "cannot source the completion"
complete -p vmctl | grep -q -- '-F _vmctl' || fail "the completion is not registered for vmctl"

# complete LINE: what TAB at the end of LINE offers, sorted, one a line, in
# $GOT. COMP_WORDS is split as bash splits it: at blanks, with '=' and ':'
# words of their own.
GOT=
complete_line() {
	local line=$1 t c word
	local -a blank
	COMP_LINE=$line
	COMP_POINT=${#line}
	COMP_WORDS=()
	read -ra blank <<<"$line"
	[[ $line == *" " ]] && blank+=("")
	for t in "${blank[@]}"; do
		word=
		for ((c = 0; c < ${#t}; c++)); do
			case ${t:c:1} in
			= | :)
				[[ -n $word ]] && COMP_WORDS+=("$word")
				COMP_WORDS+=("${t:c:1}")
				word= ;;
			*) word+=${t:c:1} ;;
			esac
		done
		[[ -n $word || -z $t ]] && COMP_WORDS+=("$word")
	done
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_vmctl
	GOT=$(printf '%s\n' "${COMPREPLY[@]}" | sort | sed '/^$/d')
	e2e_log "complete '$line' -> $(printf '%s' "$GOT" | tr '\n' ' ')"
}
expect_got() {
	[ "$GOT" = "$(printf '%s\n' "$@" | sort)" ] ||
		fail "expected '$*', got '$(printf '%s' "$GOT" | tr '\n' ' ')'"
}

cd "$E2E_TMP" || fail "cannot enter $E2E_TMP"
touch web-notes.txt

# From the command table, with no broker: commands, aliases, options.
complete_line "$VMCTL l"
expect_got launch list ls
complete_line "$VMCTL st"
expect_got start stop
complete_line "$VMCTL wait"
expect_got wait-ready
complete_line "$VMCTL launch --me"
expect_got --memory
complete_line "$VMCTL ls --f"
expect_got --format
complete_line "$VMCTL unmount --t"
expect_got --timeout
complete_line "$VMCTL list --format "
expect_got csv json table yaml
complete_line "$VMCTL launch --mount-type n"
expect_got native
complete_line "$VMCTL help wa"
expect_got wait-ready
complete_line "$VMCTL launch --cloud-init web"
expect_got web-notes.txt
# Instance names need the broker: none runs, so nothing, and none is started.
complete_line "$VMCTL start "
expect_got
[ -z "$(broker_pids)" ] || fail "completing started a broker"

# Two stopped instances recorded by hand (as in test-registry-damage.sh),
# and no daemon of the host's asked by vmctl drivers.
scope=$VMCTL_DATA/scopes/qemu
for name in web db; do
	mkdir -p "$scope/instances/$name"
	qemu-img create -q -f qcow2 -F qcow2 -b "$FAST_IMAGE" "$scope/instances/$name/disk.qcow2" 6G ||
		fail "qemu-img create failed"
done
{
	echo "instances:"
	mac=1
	for name in web db; do
		printf '  %s:\n    state: stopped\n    image: file://%s\n    image_disk: %s\n' \
			"$name" "$FAST_IMAGE" "$FAST_IMAGE"
		printf '    image_format: qcow2\n    mac: 52:54:00:00:00:0%s\n    cpus: 1\n' "$mac"
		printf '    memory: 1073741824\n    disk: 6442450944\n    deleted: false\n'
		mac=$((mac + 1))
	done
} >"$scope/instances.yaml"
vmctl set local.libvirt.uri=test:///default
expect_rc 0
vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
expect_rc 0
vmctl list --format csv
expect_rc 0
expect_out '^web,'

complete_line "$VMCTL start "
expect_got db web
complete_line "$VMCTL info w"
expect_got web
complete_line "$VMCTL stop --force "
expect_got db web
# After an option that takes a value, the next word is that value.
complete_line "$VMCTL exec --working-directory nothing-here"
expect_got
complete_line "$VMCTL launch --name "
expect_got
# NAME:PATH sources: instances (bash keeps the ':' of its own word) and files.
complete_line "$VMCTL transfer we"
expect_got web-notes.txt web:

# Setting keys, KEY= for set, and the drivers as local.driver's values.
complete_line "$VMCTL get local.dri"
expect_got local.driver
complete_line "$VMCTL set local.dri"
expect_got local.driver=
complete_line "$VMCTL set local.driver="
printf '%s\n' "$GOT" | grep -qx qemu || fail "set local.driver= does not offer qemu"
printf '%s\n' "$GOT" | grep -qx lxd || fail "set local.driver= does not offer lxd"
complete_line "$VMCTL set local.driver=li"
expect_got libvirt
e2e_log "PASS"
