#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for npc: kernel tools, a virtualenv, the project.
# Idempotent: running it again only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(iptables ipset nftables python3-nftables python3-venv python3-dev iproute2 conntrack kmod)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's python3 is the one that sees python3-nftables (libnftables bindings).
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/npc)"
