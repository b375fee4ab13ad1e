#!/usr/bin/env bash
# launch --network: an instance with an extra network on a host bridge gets
# an address there from the bridge's DHCP server, on the NIC with the MAC the
# broker recorded, and `vmctl info` shows it beside the default address.
# Bad --network specs and networks that are not bridges are refused before
# anything is created.
#
# The test makes its own bridge and runs its own dnsmasq on it (root only);
# both go away on exit, whatever the outcome.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || fail "needs root to create a bridge and tap devices"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (Debian package dnsmasq-base)"
command -v ip >/dev/null || fail "ip is not installed (Debian package iproute2)"

# ≤ 15 characters: an interface name.
BR=vmctlt$$
BR=${BR:0:15}
DNSMASQ_PID=

net_cleanup() {
	local rc=$?
	if [ -n "$DNSMASQ_PID" ]; then
		kill "$DNSMASQ_PID" 2>/dev/null
		wait "$DNSMASQ_PID" 2>/dev/null
	fi
	ip link del "$BR" 2>/dev/null
	(exit "$rc")
	e2e_cleanup
}
trap net_cleanup EXIT

# A /24 no route of this host uses yet.
for _ in $(seq 1 50); do
	SUBNET=10.$((100 + RANDOM % 100)).$((1 + RANDOM % 250))
	ip -4 route show | grep -qF "$SUBNET." || break
done
ip link add "$BR" type bridge || fail "cannot create bridge $BR"
ip addr add "$SUBNET.1/24" dev "$BR" || fail "cannot address bridge $BR"
ip link set "$BR" up || fail "cannot bring $BR up"
dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --bind-interfaces \
	--interface="$BR" --except-interface=lo --dhcp-authoritative \
	--dhcp-range="$SUBNET.100,$SUBNET.199,255.255.255.0,1h" \
	--dhcp-leasefile="$E2E_TMP/dnsmasq.leases" --pid-file="$E2E_TMP/dnsmasq.pid" \
	--log-facility="$E2E_TMP/dnsmasq.log" --log-dhcp &
DNSMASQ_PID=$!
sleep 0.5
alive "$DNSMASQ_PID" || fail "dnsmasq did not start: $(cat "$E2E_TMP/dnsmasq.log" 2>/dev/null)"
e2e_log "bridge $BR, $SUBNET.1/24, dnsmasq $DNSMASQ_PID"
SUBNET_RE=${SUBNET//./\\.}

# ---- refused before anything is created ----

vmctl launch "$FULL_IMAGE" --name badspec --network "name=$BR,mode=dhcp"
expect_rc 2
expect_error "mode must be auto or manual, not 'dhcp'"
vmctl launch "$FULL_IMAGE" --name badspec --network "mode=auto,mac=52:54:00:12:34:56"
expect_rc 2
expect_error "name= is missing"
vmctl launch "$FULL_IMAGE" --name badspec --network "name=$BR,mac=52:54:00:zz:00:01"
expect_rc 2
expect_error "not a unicast MAC address"

# lo exists on every host but is no bridge: the driver cannot attach to it.
vmctl launch "$FULL_IMAGE" --name notbridge --network lo --timeout 60
expect_rc 2
expect_error "'lo' is not a network the qemu driver can attach instances to"
vmctl launch "$FULL_IMAGE" --name notbridge --bridged --timeout 60
expect_rc 2
expect_error "vmctl set local.bridged-network=BRIDGE"
expect_not_listed badspec
expect_not_listed notbridge
[ ! -e "$VMCTL_DATA/scopes/qemu/instances/notbridge" ] || fail "a folder was left for notbridge"

vmctl networks
expect_rc 0
expect_out "^$BR +bridge"

# ---- an instance with an extra network ----

launch_full netvm --network "name=$BR,mode=auto"
expect_rc 0

# NET_MAC := the MAC of the one extra NIC of $1, as `info` shows it.
NET_MAC=
extra_mac() {
	local shown
	vmctl info "$1" --format json
	expect_rc 0
	shown=$(printf '%s\n' "$OUT" | python3 -c '
import json, sys
nets = json.load(sys.stdin)["instances"][0]["networks"]
assert len(nets) == 1 and nets[0]["mode"] == "auto", nets
print(nets[0]["name"], nets[0]["mac"])' 2>&1) || fail "info shows no extra network for $1: $shown"
	[ "${shown%% *}" = "$BR" ] || fail "info shows the network of $1 as '${shown%% *}', not $BR"
	NET_MAC=${shown#* }
	e2e_log "extra NIC of $1: $NET_MAC"
}

# DHCP may finish after cloud-init reported done: allow it a moment.
info_has_both() {
	vmctl info "$1"
	[ "$RC" -eq 0 ] && printf '%s\n' "$OUT" | grep -qE "(^|[^0-9.])$SUBNET_RE\.1[0-9][0-9]([^0-9]|$)" &&
		printf '%s\n' "$OUT" | grep -qF 10.0.2.15
}

# $1 has an address from the bridge's DHCP server on the NIC with MAC $2,
# named extra0, and `info` shows it beside the default address.
expect_extra_address() {
	local name=$1 mac=$2 addr iface banner
	wait_until 90 info_has_both "$name" ||
		fail "vmctl info $name does not show an address in $SUBNET.0/24 and 10.0.2.15"
	addr=$(printf '%s\n' "$OUT" | grep -oE "$SUBNET_RE\.1[0-9][0-9]" | head -n 1)
	e2e_log "info $name shows $addr"
	printf '%s\n' "$OUT" | grep -qF "$BR (auto, $mac)" ||
		fail "vmctl info $name does not list the network as '$BR (auto, $mac)': $OUT"

	vmctl exec "$name" -- ip -o link
	expect_rc 0
	iface=$(printf '%s\n' "$OUT" | awk -v mac="$mac" 'tolower($0) ~ "link/ether " tolower(mac) {
		sub(":$", "", $2); sub("@.*", "", $2); print $2; exit }')
	[ -n "$iface" ] || fail "no interface in $name has MAC $mac"
	[ "$iface" = extra0 ] || fail "the NIC of $name with MAC $mac is '$iface', not extra0"
	vmctl exec "$name" -- ip -4 addr show dev "$iface"
	expect_rc 0
	expect_out "inet $addr/24"

	# The bridge's DHCP server handed that address to that MAC.
	grep -qiE " $mac $addr " "$E2E_TMP/dnsmasq.leases" ||
		fail "dnsmasq has no lease of $addr for $mac: $(cat "$E2E_TMP/dnsmasq.leases")"

	# The host reaches the instance over the bridge: its SSH server answers there.
	# shellcheck disable=SC2016 # $1 is expanded by the inner shell
	banner=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/22" && head -c 4 <&3' _ "$addr" 2>&1)
	[ "$banner" = SSH- ] || fail "no SSH server answers on $addr:22 over $BR (got '$banner')"
}

extra_mac netvm
MAC=$NET_MAC
expect_extra_address netvm "$MAC"

# `list` keeps to what the driver knows (no SSH round trip per instance).
vmctl list
expect_rc 0
expect_out "^netvm +Running"

# ---- a clone: the same network, new MACs, its own address ----

vmctl stop netvm
expect_rc 0
vmctl clone netvm --name netclone
expect_rc 0
extra_mac netclone
[ "$NET_MAC" != "$MAC" ] || fail "the clone's extra NIC has the source's MAC $MAC"
CLONE_MAC=$NET_MAC
vmctl start netclone --timeout "$FULL_TIMEOUT"
expect_rc 0
expect_extra_address netclone "$CLONE_MAC"

e2e_log PASS
