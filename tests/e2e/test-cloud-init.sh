#!/usr/bin/env bash
# --cloud-init FILE reaches the real cloud-init of the full image:
# write_files and runcmd take effect in the guest.
. "$(dirname "$0")/lib.sh"

cat >"$E2E_TMP/user-data.yaml" <<'YAML'
#cloud-config
write_files:
  - path: /etc/vmctl-e2e/written
    content: |
      written by cloud-init
runcmd:
  - [ sh, -c, 'echo "runcmd ran as $(id -un)" > /var/tmp/runcmd-result' ]
YAML

launch_full configured --cloud-init "$E2E_TMP/user-data.yaml"
expect_rc 0

vmctl exec configured -- cat /etc/vmctl-e2e/written
expect_rc 0
[ "$OUT" = "written by cloud-init" ] || fail "write_files gave '$OUT'"

# runcmd runs in cloud-init's last stage; launch may return before it ends.
wait_until 120 run "$VMCTL" exec configured -- cat /var/tmp/runcmd-result ||
	fail "runcmd never wrote its file"
[ "$OUT" = "runcmd ran as root" ] || fail "runcmd gave '$OUT'"

# Our own key still works beside the user's cloud-config (multipart seed),
# and the hostname is the instance name.
vmctl exec configured -- hostname
expect_rc 0
[ "$OUT" = configured ] || fail "hostname is '$OUT'"

e2e_log PASS
