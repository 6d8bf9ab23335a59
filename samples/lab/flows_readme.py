#!/usr/bin/env python3
"""Writes samples/flows/README.md from the captures as recorded (frame numbers per
tshark) and the versions of the software that recorded them. Called by
record-flows.sh as `flows_facts.py readme DIR removed="A B" reorder_drops=N`."""
import os
import subprocess

import flows_facts as F


def first_line(*cmd):
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True)
    except OSError:
        return "not installed"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def versions():
    osname = "unknown"
    try:
        for l in open("/etc/os-release"):
            if l.startswith("PRETTY_NAME="):
                osname = l.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    tcpdump = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True)
    tl = (tcpdump.stdout + tcpdump.stderr).strip().splitlines()
    return [
        ("kernel", first_line("uname", "-r") + " (" + osname + ")"),
        ("tcpdump", "; ".join(tl[:2])),
        ("tshark", first_line("tshark", "--version")),
        ("editcap", first_line("editcap", "--version")),
        ("nginx", first_line("nginx", "-v")),
        ("curl", first_line("curl", "--version")),
        ("python3", first_line("python3", "--version")),
        ("iptables", first_line("iptables", "--version")),
    ]


def rel(c, p):
    return "%.3f" % (float(p.time) - float(c.pkts[0].time))


def nums(ps):
    return ", ".join(str(p.num) for p in ps) if ps else "none"


def lst(xs):
    return ", ".join(str(x) for x in xs) if xs else "none"


def port_reuse(path):
    cs = F.conversations(path)
    c0 = cs[0]
    cisn = [c.syns()[0].seq for c in cs]
    sisn = [c.synacks()[0].seq for c in cs]
    # the server's snd_nxt at the end of each connection = ISN + SYN + payload + FIN
    steps = []
    for a, b in zip(cs, cs[1:]):
        snd_nxt = (a.synacks()[0].seq + 1 + sum(p.tlen for p in a.s2c()) + 1) & 0xFFFFFFFF
        steps.append((b.synacks()[0].seq - snd_nxt) & 0xFFFFFFFF)
    twrule = all(s == 65537 for s in steps)
    return (
        "**port-reuse.pcap**: %d sequential connections with the same 5-tuple %s -> %s "
        "(flows_peers.py `reuse-client`: a python3 socket with SO_REUSEADDR bound to port %s, "
        "about 100 ms apart), each one `GET /1k.txt HTTP/1.0` to nginx. nginx answers and closes "
        "first (FIN at frames %s), so its side goes to TIME_WAIT and the client's port is free at "
        "once; nginx's kernel accepts each new SYN on the TIME_WAIT 5-tuple. tshark gives each "
        "connection its own tcp.stream (0-%d) and marks the SYNs at frames %s with \"A new tcp "
        "session is started with the same ports as an earlier session\". Client ISNs (raw): %s "
        "(the kernel's clock-driven ISNs, increasing). Server ISNs (raw): %s%s. A connection "
        "tracker keyed by the 5-tuple alone merges these; it must start a new connection on a "
        "SYN after the old one closed." % (
            len(cs), c0.client, c0.server, c0.client.split(":")[1],
            nums([next(p for p in c.fins()) for c in cs]), len(cs) - 1,
            nums([c.syns()[0] for c in cs[1:]]), lst(cisn), lst(sisn),
            ": each is the previous connection's final snd_nxt + 65537, the rule Linux uses "
            "for a SYN that reuses a TIME_WAIT connection (tcp_timewait_state_process: "
            "isn = tw_snd_nxt + 65535 + 2), not a fresh random ISN" if twrule else ""))


def mid_connection(path):
    cs = F.conversations(path)
    mid, full = cs
    p0 = mid.pkts[0]
    big = [p for p in mid.s2c() if p.tlen >= 1000]
    fins = mid.fins()
    return (
        "**mid-connection.pcap**: the capture starts inside an established keep-alive connection "
        "(stream %d, %s -> %s). flows_peers.py `mid-client` opened it, then sent a GET every 150 ms "
        "for 3 s (20 requests: `/small.txt`, 256 bytes, except the 11th, `/40k.txt`, 40960 bytes), "
        "then closed it; tcpdump was started about 1 s after the connect, so there is no SYN for "
        "it: frame 1 is a %s segment from the %s with %d bytes of payload (an HTTP request) and "
        "the relative sequence numbers tshark shows are relative to that frame. The 40 KB "
        "response runs over frames %d-%d; the client's FIN is frame %s. Then an ordinary complete "
        "connection (stream %d, curl `GET /1k.txt`) from frame %d (SYN) to %d. A tracker must "
        "pick up the first connection without a handshake (no ISN, no window scale seen: "
        "Linux negotiated window scaling in the unseen SYNs, so the raw window values in this "
        "stream are scaled by a factor the capture does not show) and know the client from the "
        "ports." % (
            mid.stream, mid.client, mid.server, "PSH/ACK" if p0.has(0x08) else "ACK",
            mid.side(p0), p0.tlen, big[0].num if big else 0, big[-1].num if big else 0,
            nums(fins[:1]), full.stream, full.pkts[0].num, full.pkts[-1].num))


def syn_retransmit(path):
    c = F.conversations(path)[0]
    syns = c.syns()
    return (
        "**syn-retransmit.pcap**: curl `--connect-timeout 10 http://127.0.0.1:8080/1k.txt` while an "
        "iptables rule (raw PREROUTING, `--syn -j DROP` on dport 8080, after lo handed the packet "
        "to the capture) dropped the SYNs; the rule was deleted 2.5 s after curl started. The "
        "client's kernel sent the same SYN (same ISN %d, same options) at frames %s, at t = %s s: "
        "1 s apart, not 1-2-4 s, because this kernel has `net.ipv4.tcp_syn_linear_timeouts = 4` "
        "(Linux >= 6.7: the first 4 SYN retransmissions are not backed off). tshark marks frames "
        "%s as retransmissions. The last SYN got through: SYN-ACK at frame %d, then the request, "
        "the response and a client-first close. Expect a tracker to count %d SYNs for one "
        "connection, not %d connections." % (
            syns[0].seq, nums(syns), ", ".join(rel(c, p) for p in syns), nums(syns[1:]),
            c.synacks()[0].num, len(syns), len(syns)))


def syn_timeout(path):
    c = F.conversations(path)[0]
    syns = c.syns()
    return (
        "**syn-timeout.pcap**: the same drop rule, never deleted; curl `--connect-timeout 4`. "
        "Frames %s are the SYN and its retransmissions (t = %s s, one ISN %d); curl gave up at "
        "4 s (exit 28) and closed the socket, which in SYN_SENT sends nothing: no RST, no FIN. "
        "The file holds SYNs only: a half-open attempt that never became a connection." % (
            nums(syns), ", ".join(rel(c, p) for p in syns), syns[0].seq))


def simultaneous_close(path):
    c = F.conversations(path)[0]
    f1, f2, a1, a2 = F.simclose_facts(c)
    return (
        "**simultaneous-close.pcap**: two python3 peers (flows_peers.py `simclose-server` on "
        "127.0.0.1:8081 and `simclose-client`) exchange one line each, then both call "
        "`shutdown(SHUT_WR)` at the instant the server announced in its line. Every packet of "
        "the connection was held 20 ms by flows_nfqueue.py (iptables NFQUEUE in OUTPUT, in "
        "place of `netem delay 20ms`), so the FINs cross: frame %d is the %s's FIN and frame "
        "%d the %s's FIN, whose ACK number (%d raw) does not cover the first FIN; each side "
        "then ACKs the other's FIN (frames %s and %s). Both sides went FIN_WAIT_1 -> CLOSING "
        "-> TIME_WAIT; neither was ever in CLOSE_WAIT. Which FIN is \"first\" is only the "
        "order on lo: they were sent within a millisecond." % (
            f1.num, c.side(f1), f2.num, c.side(f2), f2.ack, a1 and a1.num, a2 and a2.num))


def rst_after_fin(path):
    cs = F.conversations(path)
    fin, late, rst1, rst2 = F.rst_facts(cs)
    b = cs[1]
    r1, r2 = rst1[0], rst2[0]
    resp2 = [p for p in b.s2c() if p.tlen > 0]
    req2 = sum(p.tlen for p in b.c2s())

    def flags(p):
        return "RST+ACK" if p.has(F.ACK) else "RST without ACK"
    return (
        "**rst-after-fin.pcap**: two connections to a python3 server (flows_peers.py "
        "`rst-server`, 127.0.0.1:8082). Stream %d: the server reads the request, answers and "
        "closes: FIN at frame %d; the client reads to EOF, then writes %d bytes (frame %s); the "
        "server socket is closed (orphaned, FIN_WAIT_2, receive side shut), so its kernel "
        "answers with a RST at frame %s (%s, sequence number %d raw = the ACK number of the "
        "segment it answers: the kernel drops the socket and answers as for a segment no socket "
        "takes, tcp_v4_send_reset). The client's next write failed with EPIPE and sent nothing; the "
        "client never sent a FIN. Stream %d: the client sends a %d-byte POST, the server reads "
        "only 16 bytes, answers (frame %s, %d bytes) and closes with the rest unread, so its "
        "kernel sends RST instead of FIN (frame %d, %s, sequence = the server's snd_nxt, "
        "ACK = all %d request bytes: tcp_close -> tcp_send_active_reset). The client still "
        "read the response that arrived before the RST, then got ECONNRESET." % (
            cs[0].stream, fin.num, late[0].tlen, nums(late), nums(rst1), flags(r1), r1.seq,
            b.stream, req2, nums(resp2), sum(p.tlen for p in resp2), r2.num, flags(r2), req2))


def reorder_loss(path, drops):
    c = F.conversations(path)[0]
    rt = F.frames(path, "tcp.analysis.retransmission")
    fr = F.frames(path, "tcp.analysis.fast_retransmission")
    sp = F.frames(path, "tcp.analysis.spurious_retransmission")
    oo = F.frames(path, "tcp.analysis.out_of_order")
    lost = F.frames(path, "tcp.analysis.lost_segment")
    da = F.frames(path, "tcp.analysis.duplicate_ack")
    ds = F.frames(path, "tcp.options.sack.dsack")
    data = [p for p in c.s2c() if p.tlen > 0]
    isn = c.synacks()[0].seq
    span = max(((p.seq - isn - 1) & 0xFFFFFFFF) + p.tlen for p in data) if data else 0
    return (
        "**reorder-loss.pcap**: curl downloads `/48k.txt` (49152 bytes) from nginx while nginx's "
        "packets are shaped like `netem delay 5ms reorder 25%%`: flows_nfqueue.py holds each "
        "packet from port 8080 for 5 ms but sends 25 %% of them at once, so those overtake the "
        "held ones before they reach lo; and an iptables rule in raw PREROUTING drops 3 %% of "
        "nginx's data segments at random after the capture saw them (%s dropped in this "
        "recording), so the capture holds segments the client never got, and their "
        "retransmissions. Per tshark: %d data segments from the server with %d bytes of payload "
        "in all, for a response of %d bytes (headers and body), so %d bytes were sent more than "
        "once; \"previous segment not captured\" (a later segment overtook one still held) at "
        "frames %s; out-of-order at frames %s; retransmissions at "
        "frames %s, of which fast retransmissions %s and spurious retransmissions (data the "
        "client already had, answered with D-SACK) %s; %d duplicate ACKs, D-SACK blocks in "
        "frames %s. The kernel's own reaction to the reordering (fast retransmits on duplicate "
        "ACKs and RACK timeouts, many of them spurious) makes most of the retransmissions; a "
        "reassembler must take retransmitted and overlapping copies of bytes it already has "
        "(identical copies here) and deliver the %d bytes in order exactly once." % (
            drops or "?", len(data), sum(p.tlen for p in data), span,
            sum(p.tlen for p in data) - span, lst(lost), lst(oo),
            lst(rt), lst(fr), lst(sp), len(da), lst(ds), span))


def capture_loss(path, removed):
    c = F.conversations(path)[0]
    lost = F.frames(path, "tcp.analysis.lost_segment")
    ackl = F.frames(path, "tcp.analysis.ack_lost_segment")
    data = [p for p in c.s2c() if p.tlen > 0]
    return (
        "**capture-loss.pcap**: a plain recording of curl downloading `/60k.txt` (61440 bytes) "
        "from nginx, no shaping; then `editcap` removed frames %s of the recording, two of "
        "nginx's 1448-byte data segments. This simulates packets lost by the capture, not by "
        "the network: nothing is retransmitted, the client ACKs bytes the file never shows. "
        "In the file (frame numbers after the cut) tshark marks \"previous segment not "
        "captured\" at frames %s and \"ACKed segment that wasn't captured\" at frames %s; the "
        "server's data segments in the file carry %d bytes, 2 x 1448 short of the %d bytes "
        "(headers and body) the client received. A reassembler must report the two holes (and not wait for a "
        "retransmission that never comes)." % (
            " and ".join((removed or "?").split()), lst(lost), lst(ackl),
            sum(p.tlen for p in data), sum(p.tlen for p in data) + 2 * 1448))


def keepalive(path):
    c = F.conversations(path)[0]
    ka = F.frames(path, "tcp.analysis.keep_alive")
    kaa = F.frames(path, "tcp.analysis.keep_alive_ack")
    by = {p.num: p for p in c.pkts}
    times = ", ".join(rel(c, by[n]) for n in ka)
    return (
        "**keepalive-probes.pcap**: flows_peers.py `keepalive-client`: a python3 socket with "
        "SO_KEEPALIVE, TCP_KEEPIDLE=1, TCP_KEEPINTVL=1 (TCP_KEEPCNT=5) on a keep-alive "
        "connection to nginx: `GET /1k.txt`, 3.5 s idle, `GET /1k.txt`, close (client first). "
        "While idle the client's kernel sent keep-alive probes at frames %s (t = %s s): ACK "
        "segments with no payload and sequence number snd_nxt - 1, i.e. one byte the server "
        "has already acknowledged; nginx's kernel answered each with a duplicate ACK (frames "
        "%s, tshark's \"ACK to a TCP keep-alive segment\"). A reassembler must not take the "
        "probe's sequence number as a retransmission of data or a hole." % (
            lst(ka), times, lst(kaa)))


def write(d, notes):
    paras = [
        port_reuse(os.path.join(d, "port-reuse.pcap")),
        mid_connection(os.path.join(d, "mid-connection.pcap")),
        syn_retransmit(os.path.join(d, "syn-retransmit.pcap")),
        syn_timeout(os.path.join(d, "syn-timeout.pcap")),
        simultaneous_close(os.path.join(d, "simultaneous-close.pcap")),
        rst_after_fin(os.path.join(d, "rst-after-fin.pcap")),
        reorder_loss(os.path.join(d, "reorder-loss.pcap"), notes.get("reorder_drops")),
        capture_loss(os.path.join(d, "capture-loss.pcap"), notes.get("removed")),
        keepalive(os.path.join(d, "keepalive-probes.pcap")),
    ]
    files = sorted(f for f in os.listdir(d) if f.endswith(".pcap"))
    table = "\n".join("| %s | %d | %d |" % (f, os.path.getsize(os.path.join(d, f)),
                                            len(F.packets(os.path.join(d, f)))) for f in files)
    vers = "\n".join("- %s: %s" % kv for kv in versions())
    text = """# Sample captures for TCP connection tracking and stream reassembly

Everything here is written by `samples/lab/record-flows.sh`. To redo it all (as root,
on Debian 12):

    bash samples/lab/install-deps.sh && bash samples/lab/record-flows.sh

Every recording is real traffic from real software (nginx, curl, python3 sockets and the
Linux kernel's own TCP) on loopback (127.0.0.1) inside a private network namespace
(`unshare -n`), with TSO/GSO/GRO off on `lo` (MTU 1500, so segments carry at most 1448
bytes with timestamps). tcpdump ran on `lo` with `--immediate-mode -B 8192` (Ethernet
link type) and reported 0 packets dropped by kernel for every file kept. The one edited
file is capture-loss.pcap (two frames cut out with editcap). Time stamps, ports, ISNs and
the exact packets change with every recording; the frame numbers below are those of the
files as they are now (the README is written from them by `samples/lab/flows_readme.py`).

Shaping: the kernel these were recorded on has no `sch_netem` (CONFIG_NET_SCH_NETEM is
not set and modules cannot be loaded), so instead of `tc qdisc ... netem` the delays and
reordering come from `samples/lab/flows_nfqueue.py` (standard-library python3 speaking
nfnetlink_queue), which receives the chosen packets from an iptables `NFQUEUE` rule in the
OUTPUT chain (before `lo`, so before the capture) and accepts each one after a delay; the
kernel reinjects packets in verdict order, so a packet released early overtakes the held
ones. Dropped SYNs and "network" losses are iptables DROP rules in the raw PREROUTING
chain: on `lo`, the capture sees a packet on its way in, before PREROUTING, so those files
hold the packets that the receiver never got (as a capture at the sender would).
Checksums of loopback packets are partial (left to "offload"), so tshark calls the TCP
checksums incorrect.

Client and server: all the servers listen on 8080 (nginx) or 8081/8082 (python3), and
clients use ephemeral ports (32768-60999) except the fixed port 41000 in port-reuse.pcap.

## Files

| file | bytes | packets |
| --- | --- | --- |
%s

## What each capture shows

%s

## expected.tsv

Written by `samples/lab/flows-expected.sh` (rerun any time; it runs at the end of
record-flows.sh): one row per TCP conversation (tshark's `tcp.stream`) per file, files
in name order, conversations in the order of their first packet; tab-separated, header
row, no spaces in fields. Columns:

- `file`, `stream`: the capture and tshark's tcp.stream index (port-reuse.pcap has one
  row per connection although all have the same 5-tuple: tshark splits them at each new
  SYN, and so does its `conv,tcp` table).
- `client`, `server`: ip:port. The client is the side that sent the first SYN without
  ACK; with no SYN in the capture, the side that sent a SYN-ACK is the server; with
  neither (mid-connection.pcap stream 0), the side with the lower port is the server.
- `frames_c2s`, `frames_s2c`, `bytes_c2s`, `bytes_s2c`: frames and bytes (whole frames,
  Ethernet header included) client->server and server->client, as in
  `tshark -q -z conv,tcp` (checked against it by the script; tshark prints bytes over
  10000 rounded down to kB there, the TSV has the exact sums of frame.len).
- `payload_c2s`, `payload_s2c`: sum of tcp.len per direction, so retransmitted bytes
  count every time they were sent (reorder-loss.pcap) and bytes cut out of the capture
  do not count (capture-loss.pcap).
- `syn_count`: SYNs without ACK from the client (retransmitted SYNs included).
- `first_fin`: who sent the first FIN in the capture (`client`, `server` or `none`).
- `rst_senders`: who sent a RST (`client`, `server`, `client,server` or `none`).
- `start_time`: frame.time_epoch of the conversation's first frame in the capture.

## Software

%s
""" % (table, "\n\n".join(paras), vers)
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write(text)
    print("flows_readme: wrote %s" % os.path.join(d, "README.md"))
