#!/usr/bin/env bash
# Docker for the containers tier, on a machine with no container registry (air-gapped CI).
#
#   scripts/ci-docker.sh up        install docker.io + mmdebstrap (Debian packages), start dockerd,
#                                  build the chaos/*:local images (cached: seconds after the first time)
#   scripts/ci-docker.sh compose   validate docker-compose.test.yml, then run its smoke certification
#   scripts/ci-docker.sh down      stop the dockerd this script started (if it started one)
#
# As root (CI runs .ci/run as root). Not root: says which commands to run, and stops.
# Environment: PYTHON (default .venv/bin/python), CHAOS_IMAGE_CACHE (default /var/cache/celery-chaos).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
PYTHON="${PYTHON:-.venv/bin/python}"
PIDFILE=/run/celery-chaos-dockerd.pid
LOG=/var/log/celery-chaos-dockerd.log
LOCAL_IMAGES=(CHAOS_RABBITMQ_IMAGE=chaos/rabbitmq:local CHAOS_REDIS_IMAGE=chaos/redis:local
              CHAOS_TOXIPROXY_IMAGE=chaos/toxiproxy:local CHAOS_PYTHON_IMAGE=chaos/python:local)

say() { echo "[ci-docker] $*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "needs root. Run: sudo apt-get install -y docker.io mmdebstrap eatmydata docker-compose && sudo dockerd &"
    say "then: sudo $PYTHON -m harness.images build"
    exit 1
  fi
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v eatmydata >/dev/null 2>&1 || missing+=(eatmydata)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (Debian packages)"
  # Package scripts must not start system services (we start dockerd ourselves, below).
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
  if docker_answers; then
    say "dockerd already answers"
    return 0
  fi
  say "starting dockerd (log: $LOG)"
  # Keep Docker's userland proxy (the default): it binds every published port, so a port the
  # local stack picks as free is really free (with plain NAT a "free" loopback port may be
  # silently redirected into a container).
  setsid dockerd >"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 60); do
    docker_answers && { say "dockerd is up"; return 0; }
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { say "dockerd exited:"; tail -20 "$LOG" >&2; exit 1; }
    sleep 1
  done
  say "dockerd did not answer within 60 s:"; tail -20 "$LOG" >&2
  exit 1
}

build_images() {
  local t0=$SECONDS
  "$PYTHON" -m harness.images build
  say "images ready in $((SECONDS - t0)) s"
}

compose_smoke() {
  local project="chaos-ci-$$" file=docker-compose.test.yml
  docker-compose -f "$file" config -q
  say "$file is valid"
  # Bounded: a hung engine fails CI, never holds it.
  local rc=0
  env "${LOCAL_IMAGES[@]}" CHAOS_VENV_SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    timeout 300 docker-compose -p "$project" -f "$file" up --exit-code-from runner runner || rc=$?
  env "${LOCAL_IMAGES[@]}" timeout 120 docker-compose -p "$project" -f "$file" --profile sample --profile load \
    down -v --remove-orphans >/dev/null 2>&1 || true
  [ $rc = 0 ] && say "compose smoke certification passed" || say "compose smoke certification FAILED (code $rc)"
  return $rc
}

stop_dockerd() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PIDFILE"
}

case "${1:-up}" in
  up) need_root; install_packages; start_dockerd; build_images ;;
  compose) need_root; compose_smoke ;;
  down) stop_dockerd ;;
  *) echo "usage: $0 up|compose|down" >&2; exit 2 ;;
esac
