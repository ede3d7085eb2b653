#!/usr/bin/env bash
# Make sure rabbitmq-server and redis-server are installed (Debian packages).
# As root: install them without starting the system services (the harness runs its own
# private nodes on free ports). Not root: say the exact command to run, and stop.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v epmd >/dev/null 2>&1 || [[ " ${missing[*]} " == *" rabbitmq-server "* ]] || missing+=(erlang-base)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "celery-chaos-harness needs ${missing[*]} (Debian packages). Run:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  echo "then run this command again." >&2
  exit 1
fi
echo "installing ${missing[*]} from Debian packages..." >&2
# Keep the packages' postinst from starting system-wide services we do not use.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}" >&2
