#!/usr/bin/env bash
# launch --network on the lxd driver, against a private LXD
# (tests/e2e/lxd/lxdlib.sh): a host bridge made in the test's network
# namespace, with its own dnsmasq, is listed by `vmctl networks`; an
# instance launched with --network on it has a bridged NIC there with the
# MAC the broker recorded, gets an address from that dnsmasq, and `vmctl
# info` shows it beside the default one; --bridged (local.bridged-network
# set to that bridge) gives a second instance the same kind of NIC there.
# The bridge and dnsmasq live in the test's namespace and go with it
# (lxd_cleanup kills every process there).
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (Debian package dnsmasq-base)"
lxd_start

n=lxn$$
BR=vmctlx0
SUBNET=10.98.0
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}

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

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
vmctl networks
expect_rc 0
expect_out "^$BR +bridge"

vmctl launch "$LXD_IMAGE" --name "$n" --network "name=$BR,mode=auto" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl info "$n" --format json
expect_rc 0
mac=$(printf '%s\n' "$OUT" | python3 -c '
import json, sys
nets = json.load(sys.stdin)["instances"][0]["networks"]
assert len(nets) == 1, nets
print(nets[0]["mac"])') || fail "info shows no extra network for $n"
e2e_log "extra NIC of $n: $mac"
[ "$(lxc config device get "$n" extra0 parent)" = "$BR" ] ||
	fail "LXD's extra0 of $n is not on $BR: $(lxc config device show "$n")"
[ "$(lxc config device get "$n" extra0 hwaddr)" = "$mac" ] ||
	fail "LXD's extra0 of $n has MAC '$(lxc config device get "$n" extra0 hwaddr)', not $mac"

vmctl exec "$n" -- ip -o link
expect_rc 0
printf '%s\n' "$OUT" | grep -qiE "extra0.*link/ether $mac" || fail "the guest has no extra0 with $mac"

info_has_both() {
	vmctl info "$n"
	[ "$RC" -eq 0 ] && printf '%s\n' "$OUT" | grep -qE "${SUBNET//./\\.}\.1[0-9][0-9]" &&
		printf '%s\n' "$OUT" | grep -qE '10\.99\.0\.[0-9]+'
}
wait_until 90 info_has_both ||
	fail "vmctl info $n does not show an address in $SUBNET.0/24 beside 10.99.0.x: $OUT"
grep -qi "$mac" "$E2E_TMP/dnsmasq.leases" || fail "the test's dnsmasq gave $mac no lease"
vmctl exec "$n" -- ip -4 -o addr show dev extra0
expect_rc 0
expect_out "inet ${SUBNET//./\\.}\.1[0-9][0-9]/24"

# --bridged: the same NIC, on the bridge local.bridged-network names.
b=${n}b
vmctl set local.bridged-network="$BR"
expect_rc 0
vmctl launch "$LXD_IMAGE" --name "$b" --bridged --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl info "$b" --format json
expect_rc 0
bmac=$(printf '%s\n' "$OUT" | python3 -c '
import json, sys
nets = json.load(sys.stdin)["instances"][0]["networks"]
assert len(nets) == 1 and nets[0]["name"] == sys.argv[1], nets
print(nets[0]["mac"])' "$BR") || fail "info shows no bridged network on $BR for $b"
e2e_log "bridged NIC of $b: $bmac"
[ "$(lxc config device get "$b" extra0 nictype)" = bridged ] &&
	[ "$(lxc config device get "$b" extra0 parent)" = "$BR" ] &&
	[ "$(lxc config device get "$b" extra0 hwaddr)" = "$bmac" ] ||
	fail "LXD's extra0 of $b is not a bridged NIC on $BR with $bmac: $(lxc config device show "$b")"
vmctl exec "$b" -- ip -o link
expect_rc 0
printf '%s\n' "$OUT" | grep -qiE "extra0.*link/ether $bmac" || fail "the guest $b has no extra0 with $bmac"
bridged_address() {
	vmctl exec "$b" -- ip -4 -o addr show dev extra0
	[ "$RC" -eq 0 ] && printf '%s\n' "$OUT" | grep -qE "inet ${SUBNET//./\\.}\.1[0-9][0-9]/24"
}
wait_until 90 bridged_address || fail "extra0 of $b has no address from the test's dnsmasq: $OUT"

vmctl delete --purge "$b"
expect_rc 0
vmctl delete --purge "$n"
expect_rc 0
[ -z "$(lxc list --format csv -c n)" ] || fail "LXD has instances left: $(lxc list --format csv -c n)"
e2e_log "PASS (LXD $LXD_VERSION)"
