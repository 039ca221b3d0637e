# SPDX-License-Identifier: GPL-2.0-or-later
#
# TAP helpers for the NBD shell tests: results, skips, servers started
# in the background and stopped (by pid) at exit, and a scratch
# directory.
#
# Copyright (c) 2026 The Sluice authors

set -u

SLUICE_NBD=${SLUICE_NBD:?set SLUICE_NBD to the sluice-nbd binary}
TESTS=0
FAILED=0
SERVER_PIDS=""
WORK=$(mktemp -d /tmp/sluice-nbd-test.XXXXXX)

cleanup()
{
    local p

    for p in $SERVER_PIDS; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

ok()
{
    TESTS=$((TESTS + 1))
    echo "ok $TESTS - $1"
}

# fail DESCRIPTION [DETAILS]: details go out as TAP comments.
fail()
{
    TESTS=$((TESTS + 1))
    FAILED=$((FAILED + 1))
    echo "not ok $TESTS - $1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | head -40 | sed 's/^/# /'
    fi
}

skip()
{
    TESTS=$((TESTS + 1))
    echo "ok $TESTS - $1 # SKIP $2"
}

# check DESCRIPTION COMMAND...: passes if COMMAND succeeds.
check()
{
    local desc=$1 out

    shift
    if out=$("$@" 2>&1); then
        ok "$desc"
    else
        fail "$desc" "$out"
    fi
}

# same DESCRIPTION EXPECTED ACTUAL
same()
{
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        fail "$1" "$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$3"))"
    fi
}

have()
{
    command -v "$1" >/dev/null 2>&1
}

# wait_socket PATH PID: until the unix socket exists (or PID died).
wait_socket()
{
    local i

    for i in $(seq 100); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start_server BINARY SOCKET ARGS...: serve on a unix socket; sets
# SERVER_PID.  The server's stderr goes to $WORK/server.err.
start_server()
{
    local bin=$1 sock=$2

    shift 2
    rm -f "$sock"
    "$bin" -k "$sock" "$@" 2>>"$WORK/server.err" &
    SERVER_PID=$!
    SERVER_PIDS="$SERVER_PIDS $SERVER_PID"
    wait_socket "$sock" "$SERVER_PID"
}

stop_server()
{
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# wait_exit PID SECONDS: true if PID exits within SECONDS.
wait_exit()
{
    local i

    for i in $(seq $(($2 * 20))); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
        sleep 0.05
    done
    return 1
}

uri()
{
    echo "nbd+unix:///${2:-}?socket=$1"
}

finish()
{
    echo "1..$TESTS"
    [ "$FAILED" -eq 0 ]
}
