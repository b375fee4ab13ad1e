#!/usr/bin/env bash
# The Debian packages: a fresh build tree (in the test's folder, prefix
# /usr) makes vmctl, libvmproto1 and libvmproto-dev with `cpack -G DEB`;
# their contents are unpacked into a fresh root with dpkg -x (the host's
# own root is never touched) and used from there: the unpacked vmctl runs
# with its broker and helpers, without LD_LIBRARY_PATH and with no RUNPATH
# into the build tree, a helper builds against the unpacked vmproto.pc,
# and the manual pages render.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=$E2E_TMP/build
ROOT=$E2E_TMP/root

run cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
	-DBUILD_TESTING=OFF
expect_rc 0
e2e_log "building (a few minutes)"
cmake --build "$BUILD" -j2 >"$E2E_TMP/build.log" 2>&1 || {
	tail -n 30 "$E2E_TMP/build.log" >&2
	fail "the fresh build failed"
}
(cd "$BUILD" && run cpack -G DEB && [ "$RC" -eq 0 ]) || fail "cpack -G DEB failed"

ver=$(awk -F'"' '/^set\(CPACK_PACKAGE_VERSION / { print $2 }' "$BUILD/CPackConfig.cmake")
[ -n "$ver" ] || fail "no CPACK_PACKAGE_VERSION in CPackConfig.cmake"
declare -A DEB
for p in vmctl libvmproto1 libvmproto-dev; do
	DEB[$p]=$(ls "$BUILD"/"${p}"_*.deb 2>/dev/null)
	[ -f "${DEB[$p]}" ] || fail "cpack made no $p package"
	run dpkg-deb -f "${DEB[$p]}" Package Version Depends
	expect_rc 0
	expect_out "^Package: $p$"
done

# Depends: the Debian libraries, found by dpkg-shlibdeps, and libvmproto1
# of the same version; every one but libvmproto1 is installed on this host.
run dpkg-deb -f "${DEB[vmctl]}" Depends
expect_out '^libvmproto1 \(= [^)]+\), .*libc6 \(>= '
expect_out 'libmsgpackc2'
deps=$OUT
run dpkg-deb -f "${DEB[libvmproto-dev]}" Depends
expect_out '^libvmproto1 \(= [^)]+\), libmsgpack-dev, libev-dev'
for d in $(printf '%s\n' "$deps" | tr ',' '\n' | sed 's/(.*//; s/|.*//' | tr -d ' '); do
	[ "$d" = libvmproto1 ] && continue
	dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' ||
		fail "vmctl depends on $d, which is not installed here"
done
# Who owns what: binaries, helpers, pages and completion in vmctl; the
# shared library alone in libvmproto1; the rest for helper authors.
run dpkg-deb -c "${DEB[vmctl]}"
for f in ./usr/bin/vmctl ./usr/bin/vmctld ./usr/libexec/vmctl/vmctl-qemu-helper \
	./usr/share/man/man1/vmctl.1 ./usr/share/man/man8/vmctld.8 \
	./usr/share/man/man7/vmctl-helper.7 ./usr/share/bash-completion/completions/vmctl; do
	expect_out " $f$"
done
expect_no_out 'libvmproto|include/'
run dpkg-deb -c "${DEB[libvmproto1]}"
expect_out '/libvmproto\.so\.1 -> '
expect_no_out 'include/|\.a$|\.pc$|/bin/'
run dpkg-deb -c "${DEB[libvmproto-dev]}"
expect_out ' \./usr/include/vmproto/vmh\.h$'
expect_out '/libvmproto\.a$'
expect_out '/pkgconfig/vmproto\.pc$'

mkdir -p "$ROOT"
for p in vmctl libvmproto1 libvmproto-dev; do
	run dpkg -x "${DEB[$p]}" "$ROOT"
	expect_rc 0
done

# No RUNPATH into the build tree, none empty: each ELF file of the root.
while IFS= read -r f; do
	head -c 4 "$f" | grep -q 'ELF' || continue
	dyn=$(readelf -d "$f") || fail "readelf -d $f failed"
	path=$(printf '%s\n' "$dyn" | grep -E 'R(UN)?PATH')
	case $path in
	*"$BUILD"* | *"$SRC"*) fail "$f has a RUNPATH into the build tree: $path" ;;
	*'[]'* | *'[:'* | *':]'* | *'::'*) fail "$f has an empty RUNPATH entry: $path" ;;
	"" | *'[$ORIGIN/'*) ;;
	*) fail "$f has a RUNPATH not relative to itself: $path" ;;
	esac
done < <(find "$ROOT" -type f)

# The manual pages render.
for page in man1/vmctl.1 man8/vmctld.8 man7/vmctl-helper.7; do
	MANWIDTH=80 run man -l "$ROOT/usr/share/man/$page"
	expect_rc 0
	expect_out '^NAME$'
	[ -z "$ERR" ] || fail "man -l $page warns: $ERR"
done

# A helper built against the unpacked libvmproto-dev alone.
pc=$(find "$ROOT" -name vmproto.pc)
[ -n "$pc" ] || fail "no vmproto.pc in the root"
export PKG_CONFIG_PATH=${pc%/vmproto.pc}
run pkg-config --variable=includedir vmproto
expect_rc 0
[ "$(realpath "$OUT")" = "$ROOT/usr/include" ] || fail "vmproto.pc's includedir is $OUT, not in the root"
libdir=$(realpath "$(pkg-config --variable=libdir vmproto)")
run cc -o "$E2E_TMP/vmctl-pkg-helper" "$SRC/tests/e2e/fixtures/example-helper.c" \
	$(pkg-config --cflags --libs vmproto) -Wl,-rpath,"$libdir"
expect_rc 0
unset PKG_CONFIG_PATH
run "$E2E_TMP/vmctl-pkg-helper" --describe
expect_rc 0
expect_out '^driver pkg$'
run ldd "$E2E_TMP/vmctl-pkg-helper"
expect_out "libvmproto\\.so\\.1 => $libdir/libvmproto\\.so\\.1"

# The unpacked vmctl, broker and helper, with no LD_LIBRARY_PATH.
unset LD_LIBRARY_PATH
VMCTL=$ROOT/usr/bin/vmctl
run ldd "$VMCTL"
expect_out "libvmproto\\.so\\.1 => $ROOT/usr/bin/\\.\\./lib/"
vmctl version
expect_rc 0
expect_out "^vmctl +$ver$"
expect_out "^vmctld +$ver$"
helper_up() { vmctl version && printf '%s\n' "$OUT" | grep -qE "^driver +qemu \\(helper $ver\\)$"; }
wait_until 60 helper_up || fail "the unpacked qemu helper does not come up"
grep -qF "$ROOT/usr/bin/../libexec/vmctl/vmctl-qemu-helper" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker did not start the helper of the root"
e2e_log "PASS"
