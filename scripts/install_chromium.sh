#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed (for `make browser-test`), the way
# scripts/setup.sh installs Mesa: as root directly, with password-less sudo otherwise, else print the
# command and fail. Prints the browser's path on its last line. Safe to re-run: nothing to do when present.
set -euo pipefail

find_chromium() {
  local c
  for c in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

if path=$(find_chromium); then echo "$path"; exit 0; fi

echo "install_chromium: the browser test needs Debian's chromium package" >&2
start=$(date +%s)
apt_install() {
  "$@" apt-get update -qq >&2
  "$@" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null  # dpkg chatter; errors: stderr
}
if [ "$(id -u)" = 0 ]; then
  apt_install
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt_install sudo
else
  echo "install_chromium: installing it needs root. Run:  sudo apt-get install chromium   then re-run make browser-test." >&2
  exit 1
fi
echo "install_chromium: installed chromium in $(( $(date +%s) - start )) s" >&2
find_chromium || { echo "install_chromium: chromium installed but not found at /usr/bin/chromium" >&2; exit 1; }
