#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the audit store's tests.
#
# Usage (from the repository root):
#   eval "$(scripts/ci-postgres.sh)"
#
# On success it prints two shell lines for the caller to evaluate:
#   export TEST_DATABASE_URL=postgres://...   (trust auth, loopback only)
#   trap '...stop the cluster and remove its folder...' EXIT
# When no PostgreSQL binaries are found it prints nothing and exits 0, so the
# Postgres variants of the tests report that they are skipped.
#
# The cluster lives in a fresh temporary folder, listens on 127.0.0.1 on a free
# port, and runs as a non-root user: PostgreSQL refuses to run as root, and CI
# usually runs as root. Everything but the two lines above goes to stderr.
set -euo pipefail

log() { printf 'ci-postgres: %s\n' "$*" >&2; }

find_bin_dir() {
    local initdb dir
    if initdb=$(command -v initdb 2>/dev/null); then
        dir=$(dirname "$(readlink -f "$initdb")")
        if [[ -x "$dir/pg_ctl" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    # Debian and Ubuntu keep the server binaries off PATH; take the newest.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

if ! BIN=$(find_bin_dir); then
    log "no PostgreSQL binaries found; the Postgres tests will be skipped"
    exit 0
fi

PG_ISREADY="$BIN/pg_isready"
if [[ ! -x "$PG_ISREADY" ]]; then
    PG_ISREADY=$(command -v pg_isready || true)
fi
if [[ -z "$PG_ISREADY" ]]; then
    log "pg_isready not found next to $BIN/initdb"
    exit 1
fi

DB_SUPERUSER=policy_mesh
WORK=$(mktemp -d -t policy-mesh-pg.XXXXXX)
DATA="$WORK/data"

# Run a command as the cluster's owner: ourselves, or a system user when root.
if [[ $(id -u) -eq 0 ]]; then
    OS_USER=postgres
    if ! id "$OS_USER" >/dev/null 2>&1; then
        OS_USER=policy-mesh-ci
        if ! id "$OS_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER" >&2
        fi
    fi
    chown "$OS_USER" "$WORK"
    if command -v runuser >/dev/null 2>&1; then
        AS_OWNER="runuser -u $OS_USER --"
    else
        AS_OWNER="su -s /bin/sh $OS_USER -c"
    fi
else
    AS_OWNER=""
fi

as_owner() {
    if [[ -z "$AS_OWNER" ]]; then
        "$@"
    elif [[ "$AS_OWNER" == su* ]]; then
        $AS_OWNER "$(printf '%q ' "$@")"
    else
        $AS_OWNER "$@"
    fi
}

cleanup_on_failure() {
    as_owner "$BIN/pg_ctl" -D "$DATA" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup_on_failure ERR

as_owner "$BIN/initdb" -D "$DATA" -U "$DB_SUPERUSER" --auth=trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 || {
    log "initdb failed:"
    cat "$WORK/initdb.log" >&2
    cleanup_on_failure
    exit 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nobody listens on now; pg_ctl reports the rare race where it is taken
# before the server binds, and we then try another.
started=""
for _ in 1 2 3 4 5 6 7 8; do
    PORT=$((20000 + RANDOM % 40000))
    if port_in_use "$PORT"; then
        continue
    fi
    # fsync off: a throwaway cluster that must be fast, not durable.
    opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$WORK"
    opts="$opts -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    : >"$WORK/server.log"
    chown --reference="$WORK" "$WORK/server.log"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -o "$opts" -W start >/dev/null 2>&1 || true

    # Wait for readiness with a deadline instead of a fixed sleep.
    deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -U "$DB_SUPERUSER" -d postgres; then
            started=yes
            break
        fi
        if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && grep -q "could not\|FATAL" "$WORK/server.log"; then
            break
        fi
        sleep 0.1
    done
    [[ -n "$started" ]] && break
    as_owner "$BIN/pg_ctl" -D "$DATA" stop -m immediate >/dev/null 2>&1 || true
done

if [[ -z "$started" ]]; then
    log "PostgreSQL did not become ready; server log:"
    cat "$WORK/server.log" >&2 || true
    cleanup_on_failure
    exit 1
fi
trap - ERR

log "PostgreSQL ($BIN) ready on 127.0.0.1:$PORT, data in $WORK"
pg_stop="$(printf '%q' "$BIN/pg_ctl") -D $(printf '%q' "$DATA") stop -m fast"
case "$AS_OWNER" in
    "") stop_cmd="$pg_stop" ;;
    su*) stop_cmd="$AS_OWNER $(printf '%q' "$pg_stop")" ;;
    *) stop_cmd="$AS_OWNER $pg_stop" ;;
esac
stop_cmd="$stop_cmd >/dev/null 2>&1; rm -rf $(printf '%q' "$WORK")"
printf 'export TEST_DATABASE_URL=%q\n' "postgres://$DB_SUPERUSER@127.0.0.1:$PORT/postgres"
printf 'trap %q EXIT\n' "$stop_cmd"
