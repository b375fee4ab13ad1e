#!/usr/bin/env bash
# `cmake --install` of the current build tree into a private prefix: the
# installed vmctl and vmctld run from there alone (the broker finds the
# helpers in PREFIX/libexec/vmctl, everything finds libvmproto in
# PREFIX/lib, with no RUNPATH into the build tree and no empty one), and a
# helper builds against the installed vmproto.pc with nothing else of vmctl.
# The manual pages are installed and render.
# The build tree is then hidden (in a mount namespace), to show nothing
# still points into it.
. "$(dirname "$0")/lib.sh"

BUILD=$(cd "$VMCTL_BIN_DIR/.." && pwd)
SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
P=$E2E_TMP/prefix

run cmake --install "$BUILD" --prefix "$P"
expect_rc 0
for f in bin/vmctl bin/vmctld libexec/vmctl/vmctl-qemu-helper libexec/vmctl/vmctl-libvirt-helper \
	libexec/vmctl/vmctl-lxd-helper include/vmproto/proto.h include/vmproto/vmh.h \
	lib/libvmproto.so.1 lib/libvmproto.so lib/libvmproto.a lib/pkgconfig/vmproto.pc \
	share/man/man1/vmctl.1 share/man/man8/vmctld.8 share/man/man7/vmctl-helper.7 \
	share/bash-completion/completions/vmctl; do
	[ -e "$P/$f" ] || fail "the install has no $f"
done

# RUNPATH: relative to the binary ($ORIGIN), never the build tree, never empty.
for f in "$P"/bin/* "$P"/libexec/vmctl/* "$P"/lib/libvmproto.so.1; do
	dyn=$(readelf -d "$f") || fail "readelf -d $f failed"
	! printf '%s\n' "$dyn" | grep -qF "$BUILD" || fail "$f has a RUNPATH into the build tree"
	! printf '%s\n' "$dyn" | grep -qE 'R(UN)?PATH.*\[(.*:)?\]|R(UN)?PATH.*::' ||
		fail "$f has an empty RUNPATH entry: $(printf '%s\n' "$dyn" | grep PATH)"
	printf '%s\n' "$dyn" | awk '/R(UN)?PATH/ && !/\[\$ORIGIN\//' | grep -q . &&
		fail "$f has a RUNPATH not relative to itself: $(printf '%s\n' "$dyn" | grep PATH)"
done

# A helper from the installed SDK alone: only the prefix's pkg-config file.
export PKG_CONFIG_PATH=$P/lib/pkgconfig
run pkg-config --cflags --libs vmproto
expect_rc 0
expect_out "-I$P/lib/pkgconfig/../../include"
run cc -o "$E2E_TMP/vmctl-my-helper" "$SRC/tests/e2e/fixtures/example-helper.c" \
	$(pkg-config --cflags --libs vmproto) -Wl,-rpath,"$P/lib"
expect_rc 0
# The static library links just as well, leaving no run-time libvmproto.
run cc -o "$E2E_TMP/vmctl-static-helper" "$SRC/tests/e2e/fixtures/example-helper.c" \
	$(pkg-config --cflags vmproto) "$(pkg-config --variable=libdir vmproto)/libvmproto.a" \
	$(pkg-config --libs msgpack) -lev -pthread
expect_rc 0
! readelf -d "$E2E_TMP/vmctl-static-helper" | grep -q libvmproto || fail "static helper needs libvmproto.so"
unset PKG_CONFIG_PATH

# From here on the build tree is out of reach: every command runs in a
# mount namespace of its own with an empty tmpfs over the build tree (the
# broker vmctl starts stays in that view), so a leftover path into it fails
# now rather than works by accident. Nothing changes outside the namespace.
unshare -m true 2>/dev/null || fail "unshare -m does not work here (the test runs as root)"
hidden() {
	unshare -m bash -c 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"' hidden "$BUILD" "$@"
}
run hidden ls -A "$BUILD"
expect_rc 0
[ -z "$OUT" ] || fail "the build tree is still visible in the namespace"
vmctl() { run hidden "$VMCTL" "$@"; }

run hidden "$E2E_TMP/vmctl-my-helper" --describe
expect_rc 0
expect_out '^driver my$'
run hidden "$E2E_TMP/vmctl-static-helper" --describe
expect_rc 0
expect_out '^driver static$'

# The manual pages render, without a roff warning; vmctl(1) has every command.
for page in man1/vmctl.1 man8/vmctld.8 man7/vmctl-helper.7; do
	MANWIDTH=80 run hidden man -l "$P/share/man/$page"
	expect_rc 0
	expect_out '^NAME$'
	expect_out '^SEE ALSO$'
	[ -z "$ERR" ] || fail "man -l $page warns: $ERR"
done
MANWIDTH=80 run hidden man -l "$P/share/man/man1/vmctl.1"
for cmd in launch list wait-ready authenticate help; do
	expect_out "^   $cmd$"
done
expect_out '^       -n, --name NAME$'

VMCTL=$P/bin/vmctl
vmctl version
expect_rc 0
expect_out '^vmctl +[0-9]'
expect_out '^vmctld +[0-9]'
expect_out '^driver +qemu \(helper '
# The installed broker started the installed helper: its version shows once it is up.
helper_up() { vmctl version && printf '%s\n' "$OUT" | grep -qE '^driver +qemu \(helper [0-9]'; }
wait_until 60 helper_up || fail "the installed qemu helper does not come up"
# No daemon of the host's is asked (as in test-drivers-list.sh).
vmctl set local.libvirt.uri=test:///default
expect_rc 0
vmctl set local.lxd.socket="$E2E_TMP/no-lxd.sock"
expect_rc 0
vmctl drivers --format csv
expect_rc 0
expect_out "^qemu,yes,yes,.*,$P/libexec/vmctl/vmctl-qemu-helper$"
expect_out "^libvirt,.*,$P/libexec/vmctl/vmctl-libvirt-helper$"
e2e_log "PASS"
