#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests and benchmarks, from Debian's packages.
# Source it, then: postgres_start [--fast]  (exports OUTDIAL_TEST_POSTGRES_URL), postgres_stop.
# --fast turns off fsync: fine for tests, not for benchmarks that measure durability.
# POSTGRES_OPTIONS adds server settings (e.g. "-c shared_preload_libraries=pg_stat_statements").

postgres_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

postgres_install() {
  [ -n "$(postgres_bin)" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed; run: sudo apt-get install -y postgresql" >&2
    return 1
  fi
  echo "installing PostgreSQL from Debian's packages…" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_start() {
  postgres_install || return 1
  local bin options
  bin=$(postgres_bin)
  POSTGRES_DIR=$(mktemp -d /tmp/outdial-pg.XXXXXX)
  POSTGRES_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  chmod 755 "$POSTGRES_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$POSTGRES_DIR"
  _as_owner "$bin/initdb" -D "$POSTGRES_DIR/data" -U outdial -A trust -E UTF8 --locale=C.UTF-8 >/dev/null || return 1
  options="-p $POSTGRES_PORT -k $POSTGRES_DIR -c listen_addresses=127.0.0.1 -c max_connections=200"
  options="$options ${POSTGRES_OPTIONS:-}"
  if [ "${1:-}" = "--fast" ]; then
    options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  _as_owner "$bin/pg_ctl" -D "$POSTGRES_DIR/data" -o "$options" -l "$POSTGRES_DIR/log" -w start >/dev/null || {
    cat "$POSTGRES_DIR/log" >&2; return 1; }
  export OUTDIAL_TEST_POSTGRES_URL="postgresql+asyncpg://outdial@127.0.0.1:$POSTGRES_PORT/postgres"
  export POSTGRES_DIR POSTGRES_PORT
}

postgres_stop() {
  [ -n "${POSTGRES_DIR:-}" ] || return 0
  _as_owner "$(postgres_bin)/pg_ctl" -D "$POSTGRES_DIR/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$POSTGRES_DIR"
  unset POSTGRES_DIR
}
