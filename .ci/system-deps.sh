#!/usr/bin/env bash
# Install/start what the test suite needs outside Python, when we are allowed to (root, apt available).
# Never fails the build by itself: a test that needs a missing tool fails (CI=true) or skips with the reason.
set -u
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# kubectl builds the kustomizations in deploy/ (`kubectl kustomize`, offline). Debian ships it as
# kubernetes-client (bookworm: 1.20, with the kustomize it embeds); a newer kubectl already on PATH is kept.
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
# A headless browser loads every page nlpmon serves or writes (the report tests: console errors, screenshots).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing ${need[*]} with apt-get" >&2
    # policy-rc.d 101: install the binaries without starting the packaged services.
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1; fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >&2 \
      || echo "system-deps: apt-get install failed; tests needing ${need[*]} will say so" >&2
    [ "${created_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
  else
    echo "system-deps: ${need[*]} missing and not root; tests needing them will skip (or fail when CI=true)" >&2
  fi
fi
# The machine's PostgreSQL (tests use 127.0.0.1:5432, database test).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "system-deps: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >&2 || true
  fi
fi
exit 0
