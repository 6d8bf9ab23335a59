#!/usr/bin/env python3
"""What tshark sees in the captures of samples/flows/ (standard library + tshark).

  flows_facts.py check NAME FILE        exit 0 if FILE (recorded as NAME) shows what
                                        NAME must show; prints what it found
  flows_facts.py pick-capture-loss FILE frame numbers of two of the server's data
                                        segments to cut out for capture-loss.pcap
  flows_facts.py expected DIR           samples/flows/expected.tsv on stdout
  flows_facts.py readme DIR [KEY=VALUE...]  writes DIR/README.md (facts of the
                                        recording that the files do not hold)

Directions: "client" is the side that sent the first SYN (without ACK) of the
conversation; with no such SYN in the capture, the side that sent a SYN-ACK is
the server; with neither, the side with the lower port number is the server
(every server here listens on 8080-8082, every client port is >= 32768 or 41000).
"""
import os
import re
import subprocess
import sys

FIELDS = ["frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "tcp.srcport", "ip.dst",
          "tcp.dstport", "frame.len", "tcp.len", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw"]
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


def tshark(*args):
    r = subprocess.run(["tshark", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("tshark %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


class Pkt:
    def __init__(self, row):
        v = row.split("\t")
        self.num = int(v[0])
        self.time = v[1]
        self.stream = int(v[2])
        self.src = "%s:%s" % (v[3], v[4])
        self.dst = "%s:%s" % (v[5], v[6])
        self.sport = int(v[4])
        self.dport = int(v[6])
        self.flen = int(v[7])
        self.tlen = int(v[8])
        self.flags = int(v[9], 16)
        self.seq = int(v[10])
        self.ack = int(v[11])

    def has(self, f):
        return bool(self.flags & f)

    def fin_seq(self):
        """Sequence number the FIN occupies."""
        return (self.seq + self.tlen) & 0xFFFFFFFF


def packets(path):
    out = tshark("-r", path, "-Y", "tcp", "-T", "fields", "-E", "separator=/t",
                 *[a for f in FIELDS for a in ("-e", f)])
    return [Pkt(l) for l in out.splitlines() if l.strip()]


def frames(path, flt):
    out = tshark("-r", path, "-Y", flt, "-T", "fields", "-e", "frame.number")
    return [int(x) for x in out.split()]


class Conv:
    """One tcp.stream, with client/server sides decided as the module doc says."""

    def __init__(self, stream, pkts):
        self.stream = stream
        self.pkts = pkts
        syn = next((p for p in pkts if p.has(SYN) and not p.has(ACK)), None)
        synack = next((p for p in pkts if p.has(SYN) and p.has(ACK)), None)
        if syn:
            self.client, self.server = syn.src, syn.dst
        elif synack:
            self.client, self.server = synack.dst, synack.src
        else:
            p = pkts[0]
            if p.sport > p.dport:
                self.client, self.server = p.src, p.dst
            else:
                self.client, self.server = p.dst, p.src

    def side(self, p):
        return "client" if p.src == self.client else "server"

    def c2s(self):
        return [p for p in self.pkts if p.src == self.client]

    def s2c(self):
        return [p for p in self.pkts if p.src == self.server]

    def syns(self):
        return [p for p in self.c2s() if p.has(SYN) and not p.has(ACK)]

    def synacks(self):
        return [p for p in self.s2c() if p.has(SYN) and p.has(ACK)]

    def fins(self):
        return [p for p in self.pkts if p.has(FIN)]

    def rsts(self):
        return [p for p in self.pkts if p.has(RST)]

    def first_fin(self):
        f = self.fins()
        return self.side(f[0]) if f else "none"

    def rst_senders(self):
        s = sorted({self.side(p) for p in self.rsts()})
        return ",".join(s) if s else "none"


def conversations(path):
    by = {}
    for p in packets(path):
        by.setdefault(p.stream, []).append(p)
    return [Conv(s, ps) for s, ps in sorted(by.items(), key=lambda kv: kv[1][0].num)]


def conv_table(path):
    """tshark -q -z conv,tcp rows: {(a, b): [((frames, bytes) b->a, (frames, bytes) a->b)]};
    bytes as tshark prints them: (number, unit), unit "bytes", "kB" or "MB"."""
    rows = {}
    num = r"(\d+)\s+([\d,]+) (bytes|kB|MB)"
    for l in tshark("-r", path, "-q", "-z", "conv,tcp").splitlines():
        m = re.match(r"^(\S+)\s+<->\s+(\S+)\s+" + num + r"\s+" + num, l)
        if m:
            g = m.groups()
            rows.setdefault((g[0], g[1]), []).append(
                ((int(g[2]), (int(g[3].replace(",", "")), g[4])),
                 (int(g[5]), (int(g[6].replace(",", "")), g[7]))))
    return rows


def same_size(n, shown):
    """n bytes against tshark's "61 kB" style (SI units, rounded down)."""
    v, unit = shown
    return {"bytes": n, "kB": n // 1000, "MB": n // 1000000}[unit] == v


# ------------------------------------------------------------------------ checks
class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


def check_port_reuse(path):
    cs = conversations(path)
    need(len(cs) >= 4, "only %d conversations" % len(cs))
    need(len({(c.client, c.server) for c in cs}) == 1, "not all on one 5-tuple")
    for c in cs:
        need(len(c.syns()) == 1 and len(c.synacks()) == 1, "stream %d: no clean handshake" % c.stream)
        need(c.first_fin() == "server", "stream %d: the server did not close first" % c.stream)
    isns = [c.syns()[0].seq for c in cs]
    need(len(set(isns)) == len(isns), "client ISNs repeat: %s" % isns)
    return "%d connections %s -> %s, client ISNs %s, server ISNs %s" % (
        len(cs), cs[0].client, cs[0].server, isns, [c.synacks()[0].seq for c in cs])


def check_mid_connection(path):
    cs = conversations(path)
    need(len(cs) == 2, "%d conversations, want 2" % len(cs))
    mid, full = cs
    need(not any(p.has(SYN) for p in mid.pkts), "the first conversation has a SYN")
    need(mid.pkts[0].num == 1, "the capture does not start with the open connection")
    need(sum(p.tlen for p in mid.s2c()) > 40 * 1024, "the 40 KB download is not in the capture")
    need(mid.first_fin() == "client", "the keep-alive connection was not closed by the client")
    need(len(full.syns()) == 1 and full.fins(), "the second conversation is not complete")
    return "first frame %d from %s (%d bytes payload); second conversation starts at frame %d" % (
        mid.pkts[0].num, mid.side(mid.pkts[0]), mid.pkts[0].tlen, full.pkts[0].num)


def check_syn_retransmit(path):
    cs = conversations(path)
    need(len(cs) == 1, "%d conversations" % len(cs))
    c = cs[0]
    need(len(c.syns()) >= 3, "only %d SYNs" % len(c.syns()))
    need(len(c.synacks()) == 1, "no SYN-ACK")
    need(sum(p.tlen for p in c.s2c()) > 1024, "no response")
    return "SYNs at frames %s (t=%s), SYN-ACK at frame %d" % (
        [p.num for p in c.syns()], [round(float(p.time) - float(c.pkts[0].time), 3) for p in c.syns()],
        c.synacks()[0].num)


def check_syn_timeout(path):
    cs = conversations(path)
    need(len(cs) == 1, "%d conversations" % len(cs))
    c = cs[0]
    need(len(c.syns()) >= 3 and len(c.pkts) == len(c.syns()), "not only SYNs")
    return "SYNs at frames %s (t=%s), nothing else" % (
        [p.num for p in c.syns()], [round(float(p.time) - float(c.pkts[0].time), 3) for p in c.syns()])


def simclose_facts(c):
    fins = c.fins()
    need(len(fins) >= 2, "fewer than 2 FINs")
    f1 = fins[0]
    f2 = next((p for p in fins if p.src != f1.src), None)
    need(f2 is not None, "only one side sent a FIN")
    end1 = (f1.fin_seq() + 1) & 0xFFFFFFFF
    acks_before = [p for p in c.pkts if p.src != f1.src and p.num < f2.num and p.has(ACK) and p.ack == end1]
    need(not acks_before, "frame(s) %s ACK the first FIN before the second FIN" % [p.num for p in acks_before])
    need(f2.ack != end1, "the second FIN ACKs the first FIN: it was sent after the first FIN arrived")
    end2 = (f2.fin_seq() + 1) & 0xFFFFFFFF
    ack1 = next((p for p in c.pkts if p.src != f1.src and p.num > f2.num and p.ack == end1), None)
    ack2 = next((p for p in c.pkts if p.src == f1.src and p.num > f2.num and p.ack == end2), None)
    return f1, f2, ack1, ack2


def check_simultaneous_close(path):
    cs = conversations(path)
    need(len(cs) == 1, "%d conversations" % len(cs))
    c = cs[0]
    f1, f2, a1, a2 = simclose_facts(c)
    return "FIN %d (%s), FIN %d (%s, ack does not cover the first FIN), ACKs of the FINs: %s, %s" % (
        f1.num, c.side(f1), f2.num, c.side(f2), a1 and a1.num, a2 and a2.num)


def rst_facts(cs):
    need(len(cs) == 2, "%d conversations" % len(cs))
    a, b = cs
    fin = next((p for p in a.pkts if p.has(FIN)), None)
    need(fin is not None and a.side(fin) == "server", "connection 1: the server did not send the first FIN")
    late = [p for p in a.c2s() if p.num > fin.num and p.tlen > 0]
    need(late, "connection 1: the client wrote nothing after the FIN")
    rst1 = [p for p in a.rsts() if a.side(p) == "server" and p.num > late[0].num]
    need(rst1, "connection 1: no RST from the server after the late write")
    need(not [p for p in b.s2c() if p.has(FIN)], "connection 2: the server sent a FIN")
    rst2 = [p for p in b.rsts() if b.side(p) == "server"]
    need(rst2, "connection 2: no RST from the server")
    return fin, late, rst1, rst2


def check_rst_after_fin(path):
    cs = conversations(path)
    fin, late, rst1, rst2 = rst_facts(cs)
    return "conn 1: server FIN %d, client data after it %s, server RST %s; conn 2: server RST %s" % (
        fin.num, [p.num for p in late], [p.num for p in rst1], [p.num for p in rst2])


def check_reorder_loss(path):
    rt = frames(path, "tcp.analysis.retransmission")
    oo = frames(path, "tcp.analysis.out_of_order")
    need(rt, "no retransmission")
    need(oo, "no out-of-order segment")
    return "retransmissions at %s, out-of-order at %s" % (rt, oo)


def check_capture_loss(path):
    lost = frames(path, "tcp.analysis.lost_segment")
    ackl = frames(path, "tcp.analysis.ack_lost_segment")
    need(len(lost) >= 2, "fewer than 2 'previous segment not captured'")
    need(len(ackl) >= 1, "no 'ACKed segment that wasn't captured'")
    return "previous segment not captured at %s, ACKed unseen segment at %s" % (lost, ackl)


def check_keepalive(path):
    ka = frames(path, "tcp.analysis.keep_alive")
    kaa = frames(path, "tcp.analysis.keep_alive_ack")
    need(len(ka) >= 2, "fewer than 2 keep-alives")
    need(kaa, "no keep-alive ACK")
    return "keep-alive at %s, keep-alive ACK at %s" % (ka, kaa)


CHECKS = {
    "port-reuse.pcap": check_port_reuse,
    "mid-connection.pcap": check_mid_connection,
    "syn-retransmit.pcap": check_syn_retransmit,
    "syn-timeout.pcap": check_syn_timeout,
    "simultaneous-close.pcap": check_simultaneous_close,
    "rst-after-fin.pcap": check_rst_after_fin,
    "reorder-loss.pcap": check_reorder_loss,
    "capture-loss.pcap": check_capture_loss,
    "keepalive-probes.pcap": check_keepalive,
}


def pick_capture_loss(path):
    """Two of the server's data segments, well inside the download (the 8th and the 24th)."""
    cs = conversations(path)
    need(len(cs) == 1, "%d conversations" % len(cs))
    data = [p for p in cs[0].s2c() if p.tlen > 0]
    need(len(data) >= 30, "only %d data segments" % len(data))
    return "%d %d" % (data[7].num, data[23].num)


# ---------------------------------------------------------------------- expected
COLUMNS = ["file", "stream", "client", "server", "frames_c2s", "frames_s2c", "bytes_c2s", "bytes_s2c",
           "payload_c2s", "payload_s2c", "syn_count", "first_fin", "rst_senders", "start_time"]


def expected(d):
    print("\t".join(COLUMNS))
    for f in sorted(x for x in os.listdir(d) if x.endswith(".pcap")):
        path = os.path.join(d, f)
        cs = conversations(path)
        rows = []
        for c in cs:
            c2s, s2c = c.c2s(), c.s2c()
            rows.append([f, c.stream, c.client, c.server, len(c2s), len(s2c), sum(p.flen for p in c2s),
                         sum(p.flen for p in s2c), sum(p.tlen for p in c2s), sum(p.tlen for p in s2c),
                         len(c.syns()), c.first_fin(), c.rst_senders(), c.pkts[0].time])
        cross_check(path, cs, rows)
        for r in rows:
            print("\t".join(str(x) for x in r))


def cross_check(path, cs, rows):
    """Frames and bytes per direction must match tshark's own conv,tcp table."""
    table = conv_table(path)
    for c, r in zip(cs, rows):
        key = (c.client, c.server) if (c.client, c.server) in table else (c.server, c.client)
        cands = table.get(key)
        if not cands:
            sys.exit("%s stream %d: no conv,tcp row for %s <-> %s" % (path, c.stream, c.client, c.server))
        # a->b is "->" (3rd, 4th numbers), b->a is "<-" (1st, 2nd)
        if key == (c.client, c.server):
            mine = (r[5], r[7], r[4], r[6])
        else:
            mine = (r[4], r[6], r[5], r[7])
        ok = any(fa == mine[0] and same_size(mine[1], ba) and fb == mine[2] and same_size(mine[3], bb)
                 for (fa, ba), (fb, bb) in cands)
        if not ok:
            sys.exit("%s stream %d: counts %s differ from conv,tcp rows %s" % (path, c.stream, mine, cands))


def main():
    cmd = sys.argv[1]
    try:
        if cmd == "check":
            name, path = sys.argv[2], sys.argv[3]
            print("flows_facts: %s: %s" % (name, CHECKS[name](path)), file=sys.stderr)
        elif cmd == "pick-capture-loss":
            print(pick_capture_loss(sys.argv[2]))
        elif cmd == "expected":
            expected(sys.argv[2])
        elif cmd == "readme":
            import flows_readme
            flows_readme.write(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))
        else:
            sys.exit("unknown command " + cmd)
    except Fail as e:
        print("flows_facts: %s: %s" % (sys.argv[2], e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
