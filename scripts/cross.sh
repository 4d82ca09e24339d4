#!/usr/bin/env bash
# Docker-free cross build for a Raspberry Pi with Debian's cross compilers, qemu-user as runner.
#   bash scripts/cross.sh TARGET                 release binary + its glibc floor
#   bash scripts/cross.sh TARGET --test [ARGS]   also `cargo test --target TARGET ARGS` under qemu
# TARGET: aarch64-unknown-linux-gnu (64-bit Pi OS) or armv7-unknown-linux-gnueabihf (32-bit Pi OS).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/cross.sh TARGET [--test [cargo test args]]}
shift
case "$target" in
  aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu; pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
  armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf; pkgs="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
  *) echo "scripts/cross.sh: $target is not supported here (use cross, see cross.toml)" >&2; exit 2 ;;
esac

missing=()
for p in $pkgs qemu-user; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/cross.sh: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

cargo build --release --locked --target "$target"
bin="target/$target/release/enocean-agent"
floor=$("$gnu-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "$target: $bin, $(stat -c %s "$bin") bytes, needs ${floor/_/ >= }"
qemu=qemu-aarch64; [ "$gnu" = aarch64-linux-gnu ] || qemu=qemu-arm
"$qemu" -L "/usr/$gnu" "$bin" --version

if [ "${1:-}" = "--test" ]; then
  shift
  # Tests that start the agent binary need qemu in front of it (no binfmt handler is assumed).
  # --release reuses the release build above instead of building everything again.
  ENOCEAN_AGENT_TEST_RUNNER="$qemu -L /usr/$gnu" cargo test --release --locked --target "$target" "$@"
fi
