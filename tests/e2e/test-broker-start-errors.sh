#!/usr/bin/env bash
# What stops the broker from working reaches the user as the broker's own
# words: a settings or registry file it cannot load (file, line, column)
# when vmctl starts it.
. "$(dirname "$0")/lib.sh"

# The broker started on demand, and nothing of it left running.
expect_no_broker() {
	[ -z "$(broker_pids)" ] || fail "a broker is running although it could not start"
}

# A settings file that is not valid YAML.
printf 'local.driver: qemu\nlocal.image.refresh: [6h\n' >"$VMCTL_DATA/settings.yaml"
vmctl list
expect_rc 3
expect_err "could not start: $VMCTL_DATA/settings\\.yaml: line [0-9]+, column [0-9]+"
printf '%s\n' "$ERR" | grep -q 'No such file or directory' &&
	fail "the message blames the missing socket"
expect_no_broker

# A settings file with a value the broker refuses.
printf 'local.driver: xen\n' >"$VMCTL_DATA/settings.yaml"
vmctl version
expect_rc 3
expect_err "settings\\.yaml: line 1, column [0-9]+: invalid value \"xen\" for local\\.driver"
expect_no_broker
rm "$VMCTL_DATA/settings.yaml"

# A registry that is not a registry.
mkdir -p "$VMCTL_DATA/scopes/qemu"
printf 'instances:\n  - web\n' >"$VMCTL_DATA/scopes/qemu/instances.yaml"
vmctl list
expect_rc 3
expect_err "could not start: $VMCTL_DATA/scopes/qemu/instances\\.yaml: line [0-9]+, column [0-9]+"
expect_no_broker

e2e_log PASS
