#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, doc and compile-fail tests, against a
# real PostgreSQL server, a real Redis server and a real NATS server with JetStream.
#
# PostgreSQL: DATABASE_URL if set; else the server on 127.0.0.1:5432 if one answers; else a
# throwaway cluster started from the installed PostgreSQL binaries in a temporary folder and
# stopped when the run ends.
# Redis: REDIS_URL if set; else the server on 127.0.0.1:6379 if one answers; else a
# throwaway redis-server on a free port.
# NATS with JetStream: NATS_URL if set; else the server on 127.0.0.1:4222 if one answers; else
# a throwaway `nats-server -js` on a free port. (The esrs-nats fault tests also start throwaway
# servers of their own, which they stop and restart: NATS_SERVER_BIN names the binary.)
#
# Extra arguments are passed to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

cleanup_steps=()
cleanup() {
    for step in "${cleanup_steps[@]}"; do eval "$step" || true; done
}
trap cleanup EXIT

port_answers() { # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

find_pg_bin() { # name
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return 0
    fi
    local candidate
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [ -x "$candidate/$1" ]; then
            echo "$candidate/$1"
            return 0
        fi
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

start_throwaway_postgres() {
    local initdb bindir
    if ! initdb=$(find_pg_bin initdb) || [ ! -x "$(dirname "$(readlink -f "$initdb")")/pg_ctl" ]; then
        log "no PostgreSQL server answers on 127.0.0.1:5432, DATABASE_URL is not set, and no"
        log "PostgreSQL binaries (initdb, pg_ctl) were found on PATH or under /usr/lib/postgresql/*/bin."
        log "Install them, e.g. 'apt-get install postgresql' on Debian/Ubuntu or 'brew install postgresql' on macOS,"
        log "or point DATABASE_URL at a server: DATABASE_URL=postgres://user@host:5432/db $0"
        exit 1
    fi
    bindir=$(dirname "$(readlink -f "$initdb")")
    local dir port
    dir=$(mktemp -d -t esrs-pg.XXXXXX)
    port=$(free_port)
    as_pg=""
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root: run the cluster as an unprivileged user.
        local user=postgres
        id "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$dir"
        as_pg="runuser -u $user --"
    fi
    log "starting a throwaway PostgreSQL cluster in $dir on port $port"
    $as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    cleanup_steps+=("$as_pg '$bindir/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$dir'")
    $as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/test"
}

if [ -n "${DATABASE_URL:-}" ]; then
    log "using DATABASE_URL from the environment"
elif port_answers 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
    log "using the PostgreSQL server on 127.0.0.1:5432"
else
    start_throwaway_postgres
fi

if [ -n "${REDIS_URL:-}" ]; then
    log "using REDIS_URL from the environment"
elif port_answers 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379"
    log "using the Redis server on 127.0.0.1:6379"
elif command -v redis-server >/dev/null 2>&1; then
    port=$(free_port)
    dir=$(mktemp -d -t esrs-redis.XXXXXX)
    log "starting a throwaway redis-server on port $port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 50); do port_answers 127.0.0.1 "$port" && break; sleep 0.1; done
    cleanup_steps+=("kill \$(cat '$dir/redis.pid') 2>/dev/null; rm -rf '$dir'")
    export REDIS_URL="redis://127.0.0.1:$port"
else
    log "no Redis server answers on 127.0.0.1:6379, REDIS_URL is not set, and redis-server is not installed."
    log "Install it, e.g. 'apt-get install redis-server' on Debian/Ubuntu or 'brew install redis' on macOS,"
    log "or point REDIS_URL at a server: REDIS_URL=redis://host:6379 $0"
    exit 1
fi

if [ -n "${NATS_URL:-}" ]; then
    log "using NATS_URL from the environment"
elif port_answers 127.0.0.1 4222; then
    export NATS_URL="nats://127.0.0.1:4222"
    log "using the NATS server on 127.0.0.1:4222"
elif command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    port=$(free_port)
    dir=$(mktemp -d -t esrs-nats.XXXXXX)
    log "starting a throwaway nats-server -js on port $port"
    "$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$dir" >"$dir/nats.log" 2>&1 &
    echo $! >"$dir/nats.pid"
    for _ in $(seq 50); do port_answers 127.0.0.1 "$port" && break; sleep 0.1; done
    port_answers 127.0.0.1 "$port" || { cat "$dir/nats.log" >&2; exit 1; }
    cleanup_steps+=("kill \$(cat '$dir/nats.pid') 2>/dev/null; rm -rf '$dir'")
    export NATS_URL="nats://127.0.0.1:$port"
else
    log "no NATS server answers on 127.0.0.1:4222, NATS_URL is not set, and nats-server is not installed."
    log "Install it, e.g. 'apt-get install nats-server' on Debian/Ubuntu or 'brew install nats-server' on macOS,"
    log "or point NATS_URL at a server with JetStream enabled: NATS_URL=nats://host:4222 $0"
    exit 1
fi
if [ -z "${NATS_SERVER_BIN:-}" ]; then
    if command -v nats-server >/dev/null 2>&1; then
        export NATS_SERVER_BIN=$(command -v nats-server)
    elif [ -x /usr/sbin/nats-server ]; then
        export NATS_SERVER_BIN=/usr/sbin/nats-server
    else
        log "nats-server is not installed: the esrs-nats tests that stop and restart NATS need it"
        log "(e.g. 'apt-get install nats-server'), or set NATS_SERVER_BIN=/path/to/nats-server."
        exit 1
    fi
fi

# A test that hangs fails the run after ESRS_TEST_TIMEOUT seconds (default 40 minutes; the
# whole run takes about 10), with the test that hung named in cargo's "has been running for
# over 60 seconds" lines above, rather than holding the machine until an outer limit.
test_timeout=${ESRS_TEST_TIMEOUT:-2400}
run_tests() {
    local rc=0
    timeout -k 30 "$test_timeout" "$@" || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        log "the tests did not finish within ${test_timeout}s: a test hung (see 'has been running for over 60 seconds' above)"
    fi
    return "$rc"
}

log "cargo test --workspace --all-features $*"
run_tests cargo test --workspace --all-features "$@"

# The PostgreSQL store's guarantees again, on an events table of 8 hash partitions.
log "ESRS_TEST_PARTITIONS=8 cargo test -p esrs-postgres (conformance and guarantees, partitioned)"
ESRS_TEST_PARTITIONS=8 run_tests cargo test -p esrs-postgres --all-features \
    --test conformance --test guarantees --test idempotency --test partitions "$@"
