#!/usr/bin/env bash
# Install Debian's Chromium for the headless browser test, if it is not there yet.
# Playwright drives /usr/bin/chromium directly: no browser download from the internet.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing chromium (Debian package) for the browser test..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
