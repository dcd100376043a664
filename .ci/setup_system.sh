#!/usr/bin/env bash
# System packages the book needs: Debian's Fashion-MNIST files and Chromium (browser test).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "[setup] system packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "[setup] need root or sudo to apt-get install ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "[setup] apt-get install ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
