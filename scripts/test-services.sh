#!/usr/bin/env bash
# Private PostgreSQL and Redis servers for the test suite, bound to 127.0.0.1, living in DIR.
#
#   scripts/test-services.sh start DIR   # install if missing, start, write DIR/env, print it
#   scripts/test-services.sh stop DIR    # stop both; already-stopped is fine
#
# Nothing outside DIR is touched apart from installing the Debian packages when they are absent.
# The system services (service postgresql start, port 5432/6379) are never used.
set -Eeuo pipefail

readonly PG_DB=leadscore_test PG_USER=leadscore PG_PASSWORD=leadscore
readonly WAIT_SECONDS=${TEST_SERVICES_TIMEOUT:-30}
me=$(basename "$0")

die() {  # one clear line, then (optionally) the tail of a log file
  echo "$me: error: $1" >&2
  if [[ -n ${2:-} && -s $2 ]]; then
    tail -n 15 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

usage() { echo "usage: $me start|stop DIR" >&2; exit 2; }

[[ $# -eq 2 ]] || usage
action=$1
[[ -n $2 ]] || usage
case $action in start | stop) ;; *) usage ;; esac

if [[ $action == start ]]; then
  mkdir -p "$2" || die "cannot create $2"
elif [[ ! -e $2 ]]; then
  exit 0  # nothing was ever started there, or it is already cleaned up
fi
[[ -d $2 ]] || die "$2 is not a directory"
DIR=$(cd "$2" && pwd -P)
PG=$DIR/pg                   # owned by the postgres user: data/, run/ (socket), postgres.log
PGDATA=$PG/data
PGRUN=$PG/run
PGLOG=$PG/postgres.log
REDIS_PID=$DIR/redis.pid
REDIS_LOG=$DIR/redis.log

trap 'die "unexpected failure (line $LINENO): $BASH_COMMAND"' ERR

# --- locating (and if need be installing) the servers -------------------------------------

pg_bindir() {  # newest Debian PostgreSQL, else whatever initdb is on PATH
  local d dirs
  mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  for d in "${dirs[@]}"; do
    if [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl && -x $d/psql ]]; then
      echo "$d"
      return 0
    fi
  done
  if d=$(command -v initdb 2>/dev/null); then
    d=$(dirname "$(readlink -f "$d")")
    if [[ -x $d/postgres && -x $d/pg_ctl && -x $d/psql ]]; then
      echo "$d"
      return 0
    fi
  fi
  return 1
}

have_servers() {
  pg_bindir >/dev/null && command -v redis-server >/dev/null && command -v redis-cli >/dev/null
}

install_servers() {
  [[ $EUID -eq 0 ]] || die "PostgreSQL or Redis is missing; run as root or install postgresql redis-server"
  command -v apt-get >/dev/null || die "PostgreSQL or Redis is missing and apt-get is not available"
  local log=$DIR/apt.log
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$log" 2>&1 || die "apt-get update failed" "$log"
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
    postgresql redis-server >>"$log" 2>&1 || die "apt-get install postgresql redis-server failed" "$log"
  rm -f "$log"
}

# Commands that touch the PostgreSQL data directory run as its owner: root is refused.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd "$PG" && runuser -u postgres -- "$@")
  else
    (cd "$PG" && "$@")
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- PostgreSQL -------------------------------------------------------------------------------

pg_running() {  # exit 0 when the server for PGDATA is up
  [[ -f $PGDATA/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

pg_port() { sed -n '4p' "$PGDATA/postmaster.pid" 2>/dev/null; }

pg_psql() {  # admin SQL as the superuser over the private socket
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGRUN" -p "$1" -U postgres -d postgres -tA -c "$2"
}

pg_start() {
  if [[ ! -d $PG ]]; then
    mkdir -p "$PG"
    [[ $EUID -ne 0 ]] || chown postgres: "$PG"
    chmod 700 "$PG"
  fi
  if [[ $EUID -eq 0 ]]; then
    chmod a+x "$DIR"  # the postgres user only needs to pass through DIR
    runuser -u postgres -- test -w "$PG" ||
      die "the postgres user cannot reach $PG (use a DIR under /tmp, e.g. mktemp -d)"
  fi
  (( ${#PGRUN} < 90 )) || die "$DIR is too long a path for a unix socket; use a shorter DIR"
  as_pg mkdir -p "$PGRUN"

  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    rm -rf "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$PG/initdb.log" 2>&1 ||
      die "initdb failed" "$PG/initdb.log"
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# scripts/test-services.sh: private, throw-away test server
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGRUN'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 32MB
EOF
  fi

  local port attempt
  if pg_running; then
    port=$(pg_port)
  else
    for attempt in 1 2 3; do
      port=$(free_port)
      # The port is an option rather than configuration so a restart can pick a new one.
      if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -o "-p $port" -w -t "$WAIT_SECONDS" -s \
        start >/dev/null 2>&1; then
        break
      fi
      pg_running && break
      grep -q 'could not bind\|Address already in use' "$PGLOG" 2>/dev/null && [[ $attempt -lt 3 ]] &&
        continue
      die "PostgreSQL did not start on 127.0.0.1:$port (log: $PGLOG)" "$PGLOG"
    done
  fi
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t "$WAIT_SECONDS" ||
    die "PostgreSQL does not answer on 127.0.0.1:$port (log: $PGLOG)" "$PGLOG"

  local out
  if ! out=$(pg_psql "$port" "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'" 2>&1); then
    die "cannot query PostgreSQL as postgres: ${out//$'\n'/ }" "$PGLOG"
  fi
  if [[ $out != 1 ]]; then
    out=$(pg_psql "$port" "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" 2>&1) ||
      die "cannot create role $PG_USER: ${out//$'\n'/ }"
  fi
  out=$(pg_psql "$port" "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>&1) ||
    die "cannot query PostgreSQL: ${out//$'\n'/ }"
  if [[ $out != 1 ]]; then
    out=$(pg_psql "$port" "CREATE DATABASE $PG_DB OWNER $PG_USER" 2>&1) ||
      die "cannot create database $PG_DB: ${out//$'\n'/ }"
  fi
  PG_PORT=$port
}

pg_stop() {
  [[ -f $PGDATA/postmaster.pid ]] || return 0
  PGBIN=$(pg_bindir) || die "PostgreSQL binaries not found; cannot stop the server in $PGDATA"
  pg_running || return 0
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t "$WAIT_SECONDS" -s stop >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -t "$WAIT_SECONDS" -s stop >/dev/null 2>&1 || true
  fi
  if pg_running; then
    die "PostgreSQL in $PGDATA did not stop (log: $PGLOG)" "$PGLOG"
  fi
}

# --- Redis ------------------------------------------------------------------------------------

redis_pid() {  # the pid from DIR/redis.pid when that process is a live redis-server
  local pid
  [[ -f $REDIS_PID ]] || return 1
  pid=$(<"$REDIS_PID")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server || return 1
  echo "$pid"
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

redis_start() {
  local port attempt i pid
  if pid=$(redis_pid); then
    if [[ -f $DIR/redis.port ]] && redis_ping "$(<"$DIR/redis.port")"; then
      REDIS_PORT=$(<"$DIR/redis.port")
      return 0
    fi
    redis_stop  # alive but not answering: replace it
  fi
  for attempt in 1 2 3; do
    port=$(free_port)
    echo "$port" >"$DIR/redis.port"
    : >"$REDIS_LOG"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --dir "$DIR" --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" >/dev/null 2>&1 ||
      die "redis-server failed to start (log: $REDIS_LOG)" "$REDIS_LOG"
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
      if redis_ping "$port"; then
        REDIS_PORT=$port
        return 0
      fi
      grep -q 'Address already in use' "$REDIS_LOG" 2>/dev/null && break
      sleep 0.1
    done
    grep -q 'Address already in use' "$REDIS_LOG" 2>/dev/null && [[ $attempt -lt 3 ]] && continue
    break
  done
  die "Redis does not answer on 127.0.0.1:$port (log: $REDIS_LOG)" "$REDIS_LOG"
}

redis_stop() {
  local pid i
  pid=$(redis_pid) || { rm -f "$REDIS_PID"; return 0; }
  if [[ -f $DIR/redis.port ]] && command -v redis-cli >/dev/null; then
    redis-cli -h 127.0.0.1 -p "$(<"$DIR/redis.port")" shutdown nosave >/dev/null 2>&1 || true
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$REDIS_PID"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$REDIS_PID"
}

# --- main -------------------------------------------------------------------------------------

if [[ $action == stop ]]; then
  status=0
  (redis_stop) || status=1
  (pg_stop) || status=1
  exit "$status"
fi

have_servers || install_servers
have_servers || die "PostgreSQL or Redis still missing after apt-get install"
PGBIN=$(pg_bindir)

# A failed start leaves nothing running behind it.
trap 'status=$?; trap - EXIT ERR; if [[ $status -ne 0 ]]; then (redis_stop; pg_stop) >/dev/null 2>&1 || true; fi' EXIT

pg_start
redis_start

env_file=$DIR/env
cat >"$env_file.tmp" <<EOF
export LEADSCORE_TEST_POSTGRES_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export LEADSCORE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
EOF
mv "$env_file.tmp" "$env_file"
cat "$env_file"
