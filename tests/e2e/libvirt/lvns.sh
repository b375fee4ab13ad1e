# Sourced first by every libvirt test: the test runs in mount and network
# namespaces of its own, so that its libvirtd and virtlogd (tests/e2e/
# libvirt/lvlib.sh), their state, the networks they define, the bridges and
# dnsmasq of those networks, and the guests' addresses are private to it.
# A system libvirtd (a developer's, a user's) is neither seen nor touched,
# and whatever the test leaves in its network namespace goes with it.
#
# LV_HIDE_KVM=1 also hides /dev/kvm from everything in the test (libvirtd,
# the helpers, QEMU), as on a host without KVM.

if [ -z "${LV_IN_NAMESPACE:-}" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "[$(basename "$0" .sh)] FAIL: must run as root (private libvirtd, namespaces)" >&2
		exit 1
	fi
	command -v unshare >/dev/null || {
		echo "[$(basename "$0" .sh)] FAIL: unshare is missing (package util-linux)" >&2
		exit 1
	}
	export LV_IN_NAMESPACE=1
	exec unshare --mount --net --propagation private -- bash "$0" "$@"
fi
