#!/usr/bin/env bash
# Install every Debian package vmctl needs to build, run and test.
# Safe to run again: apt-get skips what is already there.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libmsgpack-dev libev-dev libyaml-dev libcurl4-openssl-dev libjansson-dev libssl-dev
  libcriterion-dev libcrypt-dev
  qemu-system-x86 qemu-utils genisoimage openssh-client openssh-sftp-server
  busybox-static linux-image-amd64 debootstrap e2fsprogs cpio zstd xz-utils
  python3 python3-msgpack
  kmod util-linux
  libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients dnsmasq-base iptables
  openssh-server
  mtools grub-efi-amd64-bin ovmf fdisk
  iproute2 curl time tmux
  lxd lxd-client
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
