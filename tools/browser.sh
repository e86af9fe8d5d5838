#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/test_report_browser.py): Debian's `chromium` package,
# installed when it is missing and this user can (root with apt-get). CI (CI=true) fails without it;
# elsewhere the browser tests skip and this says so.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  command -v chromium >/dev/null && exit 0
fi
if [ -n "${CI:-}" ]; then
  echo "tools/browser.sh: chromium is missing and could not be installed; CI needs it for the browser tests" >&2
  exit 1
fi
echo "tools/browser.sh: chromium not found (sudo apt-get install chromium): the browser tests will skip" >&2
