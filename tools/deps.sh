#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages pvrepl needs to build, test and benchmark.
# Idempotent: installs only what is missing, so a second run is quick and offline.
set -euo pipefail

PKGS=(
	build-essential pkg-config git
	liburing-dev libxxhash-dev liblz4-dev libssl-dev
	libnl-3-dev libnl-route-3-dev libcmocka-dev libjansson-dev libmicrohttpd-dev
	libinih-dev
	# write tracking: libbpf, and clang + bpftool to build its BPF program
	libbpf-dev bpftool clang
	fio lz4 rsync util-linux e2fsprogs xfsprogs btrfs-progs iproute2
	clang-format procps gnuplot-nox
	# make fuzz: clang and its compiler-rt (libFuzzer, ASan, UBSan runtimes), which
	# clang only recommends
	clang libclang-rt-dev
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PKGS[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: run 'make deps' as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
