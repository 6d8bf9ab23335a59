#!/usr/bin/env python3
"""Delays, reorders or drops the packets the kernel hands it on an NFQUEUE.

A stand-in for `tc qdisc ... netem` on kernels built without sch_netem: an
iptables rule (`-j NFQUEUE --queue-num N --queue-bypass`) in the OUTPUT chain sends
the chosen packets here, before they reach lo and the capture; this program gives
every packet its verdict (accept or drop) after a delay. The kernel reinjects
accepted packets in the order of the verdicts, so a packet released early
overtakes the ones still held: that is real reordering, and TCP on both sides
reacts to it as it would to a reordering network.

Standard library only: speaks nfnetlink_queue over an AF_NETLINK socket.

    flows_nfqueue.py --queue 1 --delay-ms 5 --reorder-pct 25 --loss-pct 0 --max-seconds 30

--delay-ms D      hold each packet D ms
--reorder-pct P   with probability P %, send a packet at once instead (it then
                  overtakes the held ones, like netem's "reorder P%")
--loss-pct L      with probability L %, drop the packet (never reaches lo)
--max-seconds T   exit after T seconds (packets still held are released first)
--ready-file F    created once the queue is bound (the recorder waits for it)
Stops on SIGTERM/SIGINT, releasing what it holds; prints counts on stderr.
"""
import argparse
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NF_DROP = 0
NF_ACCEPT = 1


def attr(atype, data):
    ln = 4 + len(data)
    return struct.pack("=HH", ln, atype) + data + b"\0" * ((-ln) % 4)


def nlmsg(mtype, flags, seq, queue, payload):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + payload
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def parse_attrs(data):
    out, off = {}, 0
    while off + 4 <= len(data):
        ln, atype = struct.unpack_from("=HH", data, off)
        if ln < 4:
            break
        out[atype & 0x7FFF] = data[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


def describe(pkt):
    """Short text for an IPv4/IPv6 TCP packet (for the log)."""
    try:
        if pkt[0] >> 4 == 4:
            ihl = (pkt[0] & 15) * 4
            proto, tot = pkt[9], struct.unpack_from("!H", pkt, 2)[0]
            tcp, plen = pkt[ihl:], tot - ihl
        else:
            proto, tcp, plen = pkt[6], pkt[40:], struct.unpack_from("!H", pkt, 4)[0]
        if proto != 6:
            return "proto %d" % proto
        sp, dp, seq = struct.unpack_from("!HHI", tcp, 0)
        doff, flags = (tcp[12] >> 4) * 4, tcp[13]
        names = "".join(c for c, b in zip("FSRPAU", range(6)) if flags >> b & 1)
        return "%d>%d %s seq=%d len=%d" % (sp, dp, names, seq, plen - doff)
    except (IndexError, struct.error):
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--reorder-pct", type=float, default=0.0)
    ap.add_argument("--loss-pct", type=float, default=0.0)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--ready-file")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((0, 0))
    mtype_cfg = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG
    mtype_verdict = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT

    def request(payload, seq):
        s.send(nlmsg(mtype_cfg, NLM_F_REQUEST | NLM_F_ACK, seq, a.queue, payload))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.5)
            if not r:
                continue
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                ln, mt, _, sq, _ = struct.unpack_from("=IHHII", data, off)
                if mt == NLMSG_ERROR and sq == seq:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        sys.exit("flows_nfqueue: config request failed: %s" % os.strerror(-err))
                    return
                off += (ln + 3) & ~3
        sys.exit("flows_nfqueue: no answer to config request")

    request(attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0)), 1)
    request(attr(NFQA_CFG_PARAMS, struct.pack("!IB", 128, NFQNL_COPY_PACKET)), 2)
    if a.ready_file:
        open(a.ready_file, "w").close()

    rng = random.Random()            # seeded from os.urandom: every run differs
    held = []                        # (release_time, packet_id, text), in arrival order
    counts = dict(packets=0, delayed=0, early=0, dropped=0)
    seq = 10

    def verdict(pid, v):
        nonlocal seq
        seq += 1
        s.send(nlmsg(mtype_verdict, NLM_F_REQUEST, seq, a.queue,
                     attr(NFQA_VERDICT_HDR, struct.pack("!II", v, pid))))

    def log(text):
        if a.verbose:
            print("flows_nfqueue: %.6f %s" % (time.time(), text), file=sys.stderr)

    end = time.monotonic() + a.max_seconds
    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while held and min(h[0] for h in held) <= now:
            h = min(held, key=lambda x: x[0])
            held.remove(h)
            verdict(h[1], NF_ACCEPT)
            log("release %s" % h[2])
        timeout = 0.2
        if held:
            timeout = max(0.0, min(h[0] for h in held) - now)
        try:
            r, _, _ = select.select([s], [], [], timeout)
        except InterruptedError:
            continue
        if not r:
            continue
        data = s.recv(1 << 20)
        off = 0
        while off + 20 <= len(data):
            ln, mt, _, _, _ = struct.unpack_from("=IHHII", data, off)
            if ln < 16:
                break
            if mt == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                at = parse_attrs(data[off + 20:off + ln])
                pid = struct.unpack("!I", at[NFQA_PACKET_HDR][:4])[0]
                text = describe(at.get(NFQA_PAYLOAD, b""))
                counts["packets"] += 1
                x = rng.random() * 100
                if x < a.loss_pct:
                    counts["dropped"] += 1
                    verdict(pid, NF_DROP)
                    log("drop %s" % text)
                elif x < a.loss_pct + a.reorder_pct or a.delay_ms <= 0:
                    counts["early"] += 1
                    verdict(pid, NF_ACCEPT)
                    log("send at once %s (%d held)" % (text, len(held)))
                else:
                    counts["delayed"] += 1
                    held.append((time.monotonic() + a.delay_ms / 1000.0, pid, text))
                    log("hold %s" % text)
            off += (ln + 3) & ~3
    for h in sorted(held):
        verdict(h[1], NF_ACCEPT)
    try:
        s.send(nlmsg(mtype_cfg, NLM_F_REQUEST, 99, a.queue,
                     attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0))))
    except OSError:
        pass
    print("flows_nfqueue: queue %d: %d packets, %d held %g ms, %d sent at once, %d dropped"
          % (a.queue, counts["packets"], counts["delayed"], a.delay_ms, counts["early"], counts["dropped"]),
          file=sys.stderr)

if __name__ == "__main__":
    main()
