#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# sluice-nbd serving independent NBD clients: libnbd's nbdinfo and
# nbdcopy, Debian's qemu-img and qemu-io on nbd+unix:// URIs, and fio's
# nbd engine.  Where qemu-nbd is installed, what the clients see
# (allocation maps, depth maps) is compared with what it serves.
#
# Copyright (c) 2026 The Sluice authors

. "$(dirname "$0")/common.sh"

QEMU_NBD=${QEMU_NBD:-qemu-nbd}
cd "$WORK" || exit 1
S=$WORK/s.sock
Q=$WORK/q.sock

# 64 MiB: data at 1 MiB and 40 MiB, holes elsewhere.
truncate -s 64M img
head -c 2M /dev/urandom | dd of=img bs=1M seek=1 conv=notrunc status=none
head -c 1M /dev/urandom | dd of=img bs=1M seek=40 conv=notrunc status=none
cp img img.orig

# ---- qemu-img and qemu-io ----

if have qemu-img && have qemu-io; then
    start_server "$SLUICE_NBD" "$S" -t -e 4 -f raw img
    SPID=$SERVER_PID
    got=$(qemu-img info "$(uri "$S")" 2>&1)
    case "$got" in
    *"virtual size: 64 MiB (67108864 bytes)"*) ok "qemu-img info" ;;
    *) fail "qemu-img info" "$got" ;;
    esac
    check "qemu-img compare with the image" \
        qemu-img compare -f raw -F raw img.orig "$(uri "$S")"

    if have "$QEMU_NBD"; then
        start_server "$QEMU_NBD" "$Q" -t -e 4 -f raw -r img.orig
        same "qemu-img map (json) as with qemu-nbd" \
            "$(qemu-img map --output=json "$(uri "$Q")" 2>&1)" \
            "$(qemu-img map --output=json "$(uri "$S")" 2>&1)"
        stop_server "$SERVER_PID"
    else
        skip "qemu-img map compared" "$QEMU_NBD missing"
    fi

    check "qemu-io writes" qemu-io -f raw \
        -c 'write -P 0x5a 100k 300k' -c 'write -P 0xa5 8M 64k' \
        -c 'write -z 40M 512k' -c 'discard 41M 64k' \
        -c 'aio_write -P 0x11 20M 4k' -c 'aio_write -P 0x12 21M 4k' \
        -c 'aio_flush' -c 'flush' "$(uri "$S")"
    check "qemu-io reads back" qemu-io -f raw -r \
        -c 'read -P 0x5a 100k 300k' -c 'read -P 0xa5 8M 64k' \
        -c 'read -P 0 40M 512k' -c 'read -P 0x11 20M 4k' \
        -c 'read -P 0x12 21M 4k' "$(uri "$S")"
    stop_server "$SPID"
    check "the image holds what qemu-io wrote" qemu-io -f raw -r \
        -c 'read -P 0x5a 100k 300k' -c 'read -P 0 40M 512k' img

    # Several clients at once (multi-conn), each in its own area.
    start_server "$SLUICE_NBD" "$S" -t -e 0 -f raw img
    pids=""
    for i in 0 1 2 3 4 5; do
        qemu-io -f raw -c "write -P $((i + 1)) $((48 + i))M 1M" \
            "$(uri "$S")" >/dev/null 2>&1 &
        pids="$pids $!"
    done
    good=1
    for p in $pids; do
        wait "$p" || good=0
    done
    for i in 0 1 2 3 4 5; do
        qemu-io -f raw -r -c "read -P $((i + 1)) $((48 + i))M 1M" \
            "$(uri "$S")" >/dev/null 2>&1 || good=0
    done
    if [ "$good" = 1 ]; then
        ok "six qemu-io clients at once"
    else
        fail "six qemu-io clients at once"
    fi
    stop_server "$SERVER_PID"
else
    skip "qemu-img and qemu-io" "not installed"
fi

# ---- nbdinfo and nbdcopy ----

cp img.orig img
if have nbdinfo && have nbdcopy; then
    start_server "$SLUICE_NBD" "$S" -t -e 4 -f raw -A img
    SPID=$SERVER_PID
    if have "$QEMU_NBD"; then
        start_server "$QEMU_NBD" "$Q" -t -e 4 -f raw -A img.orig
        same "nbdinfo --map as with qemu-nbd" \
            "$(nbdinfo --map "$(uri "$Q")" 2>&1)" \
            "$(nbdinfo --map "$(uri "$S")" 2>&1)"
        same "nbdinfo --map=qemu:allocation-depth as with qemu-nbd" \
            "$(nbdinfo --map=qemu:allocation-depth "$(uri "$Q")" 2>&1)" \
            "$(nbdinfo --map=qemu:allocation-depth "$(uri "$S")" 2>&1)"
        same "nbdinfo --list as with qemu-nbd" \
            "$(nbdinfo --list "$(uri "$Q")" 2>&1 | sed "s|$Q|SOCK|")" \
            "$(nbdinfo --list "$(uri "$S")" 2>&1 | sed "s|$S|SOCK|")"
        stop_server "$SERVER_PID"
    else
        skip "nbdinfo compared" "$QEMU_NBD missing"
    fi
    got=$(nbdinfo --can multi-conn "$(uri "$S")" && echo yes)
    same "multi-conn offered with -e 4" "yes" "$got"

    check "nbdcopy out" nbdcopy "$(uri "$S")" "$WORK/out.img"
    check "nbdcopy out: same bytes" cmp img.orig out.img
    head -c 64M /dev/urandom > new.img
    check "nbdcopy in (several connections)" \
        nbdcopy --connections=4 new.img "$(uri "$S")"
    check "nbdcopy in: the image holds it" cmp new.img img
    # Zeroes go as zero requests, and the image stays sparse enough.
    truncate -s 0 zero.img
    truncate -s 64M zero.img
    check "nbdcopy of zeroes" nbdcopy zero.img "$(uri "$S")"
    check "nbdcopy of zeroes: the image reads as zeroes" cmp zero.img img
    stop_server "$SPID"
else
    skip "nbdinfo and nbdcopy" "libnbd-bin not installed"
fi

# ---- A QED image with a backing file ----

if have qemu-img && have nbdinfo && have qemu-io; then
    qemu-img create -f raw base.raw 4M >/dev/null
    qemu-io -f raw -c 'write -P 0x22 0 2M' base.raw >/dev/null
    qemu-img create -f qed -b base.raw -F raw top.qed 4M >/dev/null
    qemu-io -f qed -c 'write -P 0x33 1M 128k' top.qed >/dev/null
    cp top.qed topq.qed
    start_server "$SLUICE_NBD" "$S" -t -f qed -A top.qed
    SPID=$SERVER_PID
    check "QED: reads through the backing file" qemu-io -f raw -r \
        -c 'read -P 0x22 0 1M' -c 'read -P 0x33 1M 128k' \
        -c 'read -P 0 2M 2M' "$(uri "$S")"
    if have "$QEMU_NBD"; then
        start_server "$QEMU_NBD" "$Q" -t -f qed -A -r topq.qed
        same "QED: depth map as with qemu-nbd" \
            "$(nbdinfo --map=qemu:allocation-depth "$(uri "$Q")" 2>&1)" \
            "$(nbdinfo --map=qemu:allocation-depth "$(uri "$S")" 2>&1)"
        same "QED: allocation map as with qemu-nbd" \
            "$(nbdinfo --map "$(uri "$Q")" 2>&1)" \
            "$(nbdinfo --map "$(uri "$S")" 2>&1)"
        stop_server "$SERVER_PID"
    else
        skip "QED maps compared" "$QEMU_NBD missing"
    fi
    check "QED: writes through NBD" qemu-io -f raw \
        -c 'write -P 0x44 3M 64k' "$(uri "$S")"
    stop_server "$SPID"
    check "QED: the image is consistent" qemu-img check -f qed top.qed
    check "QED: data landed in the overlay" qemu-io -f qed -r \
        -c 'read -P 0x44 3M 64k' -c 'read -P 0x33 1M 128k' top.qed
else
    skip "QED over NBD" "qemu-img, qemu-io or nbdinfo missing"
fi

# ---- fio's nbd engine ----

if have fio && fio --enghelp 2>/dev/null | grep -qw nbd; then
    truncate -s 64M fio.img
    start_server "$SLUICE_NBD" "$S" -t -e 0 -f raw fio.img
    out=$(fio --name=verify --ioengine=nbd --uri="$(uri "$S")" \
              --rw=randwrite --bs=4k --iodepth=16 --size=16M \
              --verify=crc32c --do_verify=1 --verify_fatal=1 2>&1)
    if [ $? -eq 0 ] && ! printf '%s' "$out" | grep -q 'verify:.*bad'; then
        ok "fio nbd: random writes verified"
    else
        fail "fio nbd: random writes verified" "$out"
    fi
    out=$(fio --name=rr --ioengine=nbd --uri="$(uri "$S")" \
              --rw=randrw --bs=64k --iodepth=8 --size=16M --numjobs=2 \
              --group_reporting 2>&1)
    check "fio nbd: mixed load from two jobs" test $? -eq 0
    stop_server "$SERVER_PID"
else
    skip "fio nbd engine" "fio without the nbd engine"
fi

grep -v '^WARNING\|^ *Automatically\|^ *Specify' "$WORK/server.err" \
    > "$WORK/server.err.filtered" 2>/dev/null
if [ -s "$WORK/server.err.filtered" ]; then
    fail "the servers printed nothing unexpected" \
        "$(cat "$WORK/server.err.filtered")"
else
    ok "the servers printed nothing unexpected"
fi

finish
