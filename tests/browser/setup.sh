#!/usr/bin/env bash
# Headless Chromium for the report's rendering test (tests/test_report.py), on Debian/Ubuntu as root:
# installs Debian's `chromium` package (and a font, so the page's text has glyphs) with apt when absent,
# then prints the browser's version. Idempotent: with chromium installed it only prints the version.
#
# Environment: CHROMIUM (the browser's command, default chromium).
set -euo pipefail

BROWSER=${CHROMIUM:-chromium}
APT_LOG=/tmp/unetflow-chromium-apt.log

fail() {
    echo "chromium setup FAILED: $*" >&2
    exit 1
}

if ! command -v "$BROWSER" >/dev/null; then
    [[ $(id -u) -eq 0 ]] || fail "$BROWSER is not installed and installing it needs root; run: sudo $0"
    command -v apt-get >/dev/null || fail "$BROWSER is not installed and there is no apt-get to install it"
    echo "installing chromium with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    install_packages() {
        apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >>"$APT_LOG" 2>&1
    }
    : >"$APT_LOG"
    if ! install_packages; then
        apt-get update -qq >>"$APT_LOG" 2>&1 || true
        install_packages || fail "apt-get install chromium failed ($APT_LOG): $(tail -n 3 "$APT_LOG")"
    fi
    command -v "$BROWSER" >/dev/null || fail "apt-get installed chromium but $BROWSER is not on PATH"
fi
"$BROWSER" --version 2>/dev/null || fail "$BROWSER --version failed"
