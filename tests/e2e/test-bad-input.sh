#!/usr/bin/env bash
# Bad input gets a clear message and a non-zero exit, and changes nothing.
. "$(dirname "$0")/lib.sh"

launch_fast taken
expect_rc 0
list_names_states
before=$LISTING
printf '%s\n' "$before" | grep -q '^taken Running$' || fail "the first instance is not Running"

unchanged() {
	list_names_states
	[ "$LISTING" = "$before" ] || fail "vmctl list changed after a refused command: $LISTING"
}

# Invalid names (RFC 1123 labels starting with a letter).
for bad in under_score -dash-first ends-with-dash- 9lives UPPER "$(printf 'a%.0s' $(seq 1 64))" 'sp ace' ''; do
	vmctl launch "$FAST_IMAGE" --name "$bad" --timeout 60
	expect_rc 2
	expect_err 'name'
	unchanged
done

# The name is taken.
vmctl launch "$FAST_IMAGE" --name taken --timeout 60
expect_error 'taken'
expect_err 'exist|already|use'
unchanged

# Sizes: not a size, and below the minimums.
vmctl launch "$FAST_IMAGE" --name sizes --memory 1Q --timeout 60
expect_rc 2
expect_err '1Q'
unchanged
vmctl launch "$FAST_IMAGE" --name sizes --memory 100M --timeout 60
expect_error 'memory'
unchanged
vmctl launch "$FAST_IMAGE" --name sizes --disk 512M --timeout 60
expect_error 'disk'
unchanged

# Instances that do not exist.
for cmd in start stop info delete recover; do
	vmctl "$cmd" ghost
	expect_error 'ghost'
	unchanged
done
vmctl exec ghost -- true
expect_error 'ghost'
unchanged

# Cloud-init files that cannot be read, or are not a cloud-config mapping.
vmctl launch "$FAST_IMAGE" --name ci --cloud-init "$E2E_TMP/no-such-file.yaml" --timeout 60
expect_error 'no-such-file'
unchanged
mkdir "$E2E_TMP/a-folder.yaml"
vmctl launch "$FAST_IMAGE" --name ci --cloud-init "$E2E_TMP/a-folder.yaml" --timeout 60
expect_error 'a-folder'
unchanged
printf '#cloud-config\nwrite_files: [ {path: /x\n' >"$E2E_TMP/broken.yaml"
vmctl launch "$FAST_IMAGE" --name ci --cloud-init "$E2E_TMP/broken.yaml" --timeout 60
expect_error 'yaml|line'
unchanged
printf -- '- just\n- a list\n' >"$E2E_TMP/list.yaml"
vmctl launch "$FAST_IMAGE" --name ci --cloud-init "$E2E_TMP/list.yaml" --timeout 60
expect_error 'mapping|map|dictionary'
unchanged

# Unknown options and commands.
vmctl launch "$FAST_IMAGE" --name opt --frobnicate
expect_rc 2
expect_err 'frobnicate'
unchanged
vmctl list --frobnicate
expect_rc 2
expect_err 'frobnicate'
vmctl frobnicate
expect_rc 2
expect_err 'frobnicate'
unchanged

# Nothing was left behind in the scope by the refused launches.
for n in sizes ci opt; do
	[ ! -e "$VMCTL_DATA/scopes/qemu/instances/$n" ] || fail "a folder was left for refused instance $n"
done

e2e_log PASS
