#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# sluice-nbd's command line against Debian's qemu-nbd: the same messages
# and exit codes for bad invocations, the same export as nbdinfo sees
# it for a range of options, exit after the last client unless -t, the
# -e limit, --fork and --pid-file, and an orderly exit on SIGTERM.
#
# Copyright (c) 2026 The Sluice authors

. "$(dirname "$0")/common.sh"

QEMU_NBD=${QEMU_NBD:-qemu-nbd}
cd "$WORK" || exit 1
truncate -s 1M img
printf 'hello, nbd' | dd of=img bs=1 seek=65536 conv=notrunc status=none
LONG=$(head -c 4097 /dev/zero | tr '\0' a)

# run BINARY ARGS...: stderr and exit code, the program name replaced.
run()
{
    local bin=$1 out rc

    shift
    out=$(timeout 10 "$bin" "$@" 2>&1)
    rc=$?
    printf '%s\nrc=%s\n' "$out" "$rc" |
        sed -e "s/$(basename "$bin")/PROG/g"
}

# ---- Bad invocations: byte-identical messages ----

if have "$QEMU_NBD"; then
    while IFS= read -r args; do
        # shellcheck disable=SC2086
        want=$(run "$QEMU_NBD" $args)
        # shellcheck disable=SC2086
        got=$(run "$SLUICE_NBD" $args)
        same "message for: ${args:0:60}" "$want" "$got"
    done <<EOF

img img2
-e abc img
-e -1 img
--cache=foo img
-n --cache=none img
--aio=foo img
--aio=native img
-f raw --aio=native img
--image-opts --aio=native driver=raw,file.filename=img
--discard=foo img
--discard=unmap --discard=ignore img
--detect-zeroes=foo img
--detect-zeroes=unmap img
-o abc img
-o 2M img
-f raw -o 2097152 img
-f foo img
-x $LONG img
-D $LONG img
--tls-creds=x img
--tls-authz=x img
--selinux-label=x img
-L img
-L -x foo
--image-opts -f raw img
nonexistent
--image-opts driver=raw,file.filename=nonexistent
-zzz
--foo
-k
-f raw -B foo img
-r -B foo img
-f raw -l x img
-f raw -k /nonexistent/dir/sock img
-f raw -p abc img
-f raw -b 1.2.3.4.5 img
EOF
else
    skip "messages compared with qemu-nbd" "$QEMU_NBD not installed"
fi

# The kernel client is refused with a clear message.
got=$(run "$SLUICE_NBD" -c /dev/nbd0 img)
case "$got" in
*"not supported"*rc=1) ok "-c is refused" ;;
*) fail "-c is refused" "$got" ;;
esac
got=$("$SLUICE_NBD" --help)
case "$got" in
*"--shared=NUM"*"--persistent"*"--image-opts"*) ok "--help lists the options" ;;
*) fail "--help lists the options" "$got" ;;
esac
check "--version exits 0" "$SLUICE_NBD" -V

# ---- The export as nbdinfo sees it ----

X=""
if have nbdinfo && have "$QEMU_NBD"; then
    while IFS= read -r args; do
        # shellcheck disable=SC2086
        start_server "$QEMU_NBD" "$WORK/q.sock" -t $args img
        want=$(nbdinfo "$(uri "$WORK/q.sock" "$X")" 2>&1 |
               sed "s|$WORK/q.sock|SOCK|")
        stop_server "$SERVER_PID"
        # shellcheck disable=SC2086
        start_server "$SLUICE_NBD" "$WORK/s.sock" -t $args img
        got=$(nbdinfo "$(uri "$WORK/s.sock" "$X")" 2>&1 |
              sed "s|$WORK/s.sock|SOCK|")
        stop_server "$SERVER_PID"
        same "nbdinfo with: $args" "$want" "$got"
    done <<EOF
-f raw
-f raw -r
-f raw -e 3 -x foo -D described -A
-f raw -o 4096 -e 0
-f raw --cache=none --aio=native
-f raw --cache=writethrough --discard=unmap --detect-zeroes=unmap
EOF
    # -x names the export: a client asking for it by name.
    start_server "$SLUICE_NBD" "$WORK/s.sock" -t -f raw -x name img
    check "export name from -x" nbdinfo --size "$(uri "$WORK/s.sock" name)"
    if nbdinfo --size "$(uri "$WORK/s.sock")" >/dev/null 2>&1; then
        fail "no default export besides -x"
    else
        ok "no default export besides -x"
    fi
    stop_server "$SERVER_PID"
else
    skip "nbdinfo compared with qemu-nbd" "nbdinfo or $QEMU_NBD missing"
fi

# ---- Lifetime ----

if have nbdinfo; then
    start_server "$SLUICE_NBD" "$WORK/s.sock" -f raw img
    nbdinfo --size "$(uri "$WORK/s.sock")" >/dev/null
    if wait_exit "$SERVER_PID" 5; then
        ok "exits after the last client"
    else
        fail "exits after the last client"
    fi

    start_server "$SLUICE_NBD" "$WORK/s.sock" -t -f raw img
    nbdinfo --size "$(uri "$WORK/s.sock")" >/dev/null
    nbdinfo --size "$(uri "$WORK/s.sock")" >/dev/null
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        ok "-t keeps serving"
    else
        fail "-t keeps serving"
    fi
    kill -TERM "$SERVER_PID"
    if wait_exit "$SERVER_PID" 5 && [ ! -e "$WORK/s.sock" ]; then
        ok "SIGTERM: orderly exit, socket removed"
    else
        fail "SIGTERM: orderly exit, socket removed"
    fi

    # -e 1: a second client waits until the first has gone.
    if have qemu-io; then
        start_server "$SLUICE_NBD" "$WORK/s.sock" -t -e 1 -f raw img
        (sleep 2; echo quit) |
            qemu-io -f raw "$(uri "$WORK/s.sock")" >/dev/null 2>&1 &
        holder=$!
        sleep 0.5
        if timeout 1 nbdinfo --size "$(uri "$WORK/s.sock")" >/dev/null 2>&1
        then
            fail "-e 1: a second client waits"
        else
            ok "-e 1: a second client waits"
        fi
        wait "$holder"
        check "-e 1: served once the first has gone" \
            timeout 5 nbdinfo --size "$(uri "$WORK/s.sock")"
        stop_server "$SERVER_PID"
    else
        skip "-e 1 limit" "qemu-io missing"
    fi

    # --fork with --pid-file: the parent returns once serving.
    rm -f "$WORK/s.sock" "$WORK/pid"
    if "$SLUICE_NBD" --fork --pid-file "$WORK/pid" -t -f raw \
        -k "$WORK/s.sock" img && [ -S "$WORK/s.sock" ] && [ -s "$WORK/pid" ]
    then
        pid=$(cat "$WORK/pid")
        SERVER_PIDS="$SERVER_PIDS $pid"
        check "--fork: serving" nbdinfo --size "$(uri "$WORK/s.sock")"
        kill "$pid"
        for i in $(seq 100); do
            [ -e "$WORK/s.sock" ] || break
            sleep 0.05
        done
        if [ -e "$WORK/s.sock" ]; then
            fail "--fork: stopped by SIGTERM"
        else
            ok "--fork: stopped by SIGTERM"
        fi
    else
        fail "--fork: parent returns once serving"
    fi
    # A failure after the fork makes the parent fail.
    if "$SLUICE_NBD" --fork -f raw -k /nonexistent/dir/s img 2>/dev/null
    then
        fail "--fork: a failing child fails the parent"
    else
        ok "--fork: a failing child fails the parent"
    fi
else
    skip "lifetime tests" "nbdinfo missing"
fi

finish
