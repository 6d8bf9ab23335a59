#!/usr/bin/env python3
"""Writes the adversarial load captures that benches/adversarial.sh runs rstscope on.

Each capture is a load shape that a hostile or broken network can produce, built from real
packets: the SYN and the RST of samples/scenarios/connect-refused.pcap and the handshake,
request and 1448-byte data segment of samples/scenarios/healthy-large-download.pcap (all
recorded on loopback, Ethernet link type), with only addresses, ports, sequence numbers,
lengths and timestamps rewritten. TCP checksums are left as recorded (rstscope does not
verify them, and loopback captures carry unfinished ones anyway); IPv4 header checksums are
recomputed.

    halfopen.pcap   1,000,000 SYNs from distinct client 5-tuples, 1 us apart, never answered:
                    far more half-open connections than the live-connection cap (262,144).
    reorder.pcap    one HTTP/1.1 connection whose 1 GiB response arrives in 2 MiB windows,
                    each window's segments in reverse order: every window overflows the
                    1 MiB out-of-order buffer cap.
    strayrst.pcap   1,000,000 RSTs, each for a connection never seen, 10 us apart.

Usage: adversarial.py OUT_DIR [halfopen|reorder|strayrst ...] (default: all three).
ADVERSARIAL_CONNECTIONS=N sets the connections of halfopen and strayrst (default 1,000,000);
ADVERSARIAL_SUFFIX=S appends S to the file names.
Standard library only.
"""

import os
import struct
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(REPO, "samples", "scenarios")

ETH = 14  # Ethernet header: every template comes from an Ethernet (link type 1) capture.
# Connections of halfopen and strayrst; smaller values check that time grows linearly.
CONNECTIONS = int(os.environ.get("ADVERSARIAL_CONNECTIONS", 1_000_000))
RESPONSE_BYTES = 1 << 30
WINDOW = 2 << 20
MSS = 1448


def read_pcap(path):
    """The frames of a little-endian microsecond pcap, as bytes."""
    with open(path, "rb") as f:
        b = f.read()
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", b[:24])
    assert magic == 0xA1B2C3D4 and link == 1, f"{path}: expected a LE us Ethernet pcap"
    frames, at = [], 24
    while at + 16 <= len(b):
        caplen = struct.unpack("<I", b[at + 8 : at + 12])[0]
        frames.append(b[at + 16 : at + 16 + caplen])
        at += 16 + caplen
    return frames


def tcp_flags(frame):
    ihl = (frame[ETH] & 0x0F) * 4
    return frame[ETH + ihl + 13]


def ipv4_checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


class Template:
    """One recorded frame whose IPv4/TCP fields can be rewritten (no IP options expected)."""

    def __init__(self, frame):
        self.ihl = (frame[ETH] & 0x0F) * 4
        self.tcp = ETH + self.ihl
        self.doff = (frame[self.tcp + 12] >> 4) * 4
        self.head = bytearray(frame[: self.tcp + self.doff])

    def build(self, src, dst, sport, dport, seq, ack, payload_len=0, ip_id=0):
        h = self.head
        h[ETH + 4 : ETH + 6] = struct.pack("!H", ip_id & 0xFFFF)
        h[ETH + 2 : ETH + 4] = struct.pack("!H", self.ihl + self.doff + payload_len)
        h[ETH + 12 : ETH + 16] = src
        h[ETH + 16 : ETH + 20] = dst
        h[ETH + 10 : ETH + 12] = b"\0\0"
        h[ETH + 10 : ETH + 12] = struct.pack("!H", ipv4_checksum(bytes(h[ETH : self.tcp])))
        h[self.tcp : self.tcp + 12] = struct.pack("!HHII", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF)
        return bytes(h)


class PcapWriter:
    def __init__(self, path):
        self.f = open(path, "wb", buffering=8 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.packets = 0

    def write(self, ts_us, head, payload=b""):
        n = len(head) + len(payload)
        self.f.write(struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, n, n))
        self.f.write(head)
        if payload:
            self.f.write(payload)
        self.packets += 1

    def close(self):
        self.f.close()


# Capture time of the first packet: 2026-11-21T12:00:00Z.
T0 = 1_795_262_400 * 1_000_000
SERVER = bytes([127, 0, 0, 1])


def client_of(i):
    """A distinct (address, port) on 127.0.0.0/8 for connection i, never 127.0.0.1."""
    host = 2 + i // 50_000
    return bytes([127, 1, (host >> 8) & 0xFF, host & 0xFF]), 10_000 + i % 50_000


def halfopen(path):
    syn = Template(read_pcap(os.path.join(SCENARIOS, "connect-refused.pcap"))[0])
    assert tcp_flags(syn.head) == 0x02
    w = PcapWriter(path)
    for i in range(CONNECTIONS):
        addr, port = client_of(i)
        w.write(T0 + i, syn.build(addr, SERVER, port, 8080, 0x1000_0000 + i * 7919, 0, ip_id=i))
    w.close()
    return w.packets


def strayrst(path):
    rst = Template(read_pcap(os.path.join(SCENARIOS, "connect-refused.pcap"))[1])
    assert tcp_flags(rst.head) & 0x04
    w = PcapWriter(path)
    for i in range(CONNECTIONS):
        addr, port = client_of(i)
        # As a server's RST to a client it never talked to: from the server's port.
        w.write(T0 + i * 10, rst.build(SERVER, addr, 8080, port, 0, 0x2000_0000 + i * 104_729, ip_id=i))
    w.close()
    return w.packets


def reorder(path):
    frames = read_pcap(os.path.join(SCENARIOS, "healthy-large-download.pcap"))
    syn, syn_ack, ack, get, server_ack, data = (Template(f) for f in frames[:6])
    assert [tcp_flags(t.head) for t in (syn, syn_ack, ack)] == [0x02, 0x12, 0x10]
    request = frames[3][get.tcp + get.doff :]
    assert request.startswith(b"GET ")
    client, server = bytes([127, 0, 0, 1]), SERVER
    cport, sport = 43568, 8080
    cisn, sisn = 0x6A3F_0000, 0xC0DE_0000
    w = PcapWriter(path)
    t = T0
    w.write(t, syn.build(client, server, cport, sport, cisn, 0))
    w.write(t + 40, syn_ack.build(server, client, sport, cport, sisn, cisn + 1))
    w.write(t + 60, ack.build(client, server, cport, sport, cisn + 1, sisn + 1))
    w.write(t + 100, get.build(client, server, cport, sport, cisn + 1, sisn + 1, len(request)), request)
    cseq = cisn + 1 + len(request)
    w.write(t + 140, server_ack.build(server, client, sport, cport, sisn + 1, cseq))
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {RESPONSE_BYTES}\r\n\r\n".encode()
    body = (b"the quick brown fox jumps over the lazy dog\n" * (2 * MSS // 44 + 2))
    t += 200
    sent = 0
    total = len(head) + RESPONSE_BYTES
    # Segments of each window in reverse order, 11 us apart (about 1 Gbit/s).
    for wstart in range(0, total, WINDOW):
        wend = min(wstart + WINDOW, total)
        for sstart in reversed(range(wstart, wend, MSS)):
            send = min(sstart + MSS, wend)
            if sstart < len(head):
                payload = (head + body)[sstart:send]
            else:
                off = (sstart - len(head)) % 44
                payload = body[off : off + (send - sstart)]
            w.write(t, data.build(server, client, sport, cport, sisn + 1 + sstart, cseq, len(payload), ip_id=sent), payload)
            t += 11
            sent += 1
        # The client acknowledges each window once it has all of it.
        w.write(t, server_ack.build(client, server, cport, sport, cseq, sisn + 1 + wend))
        t += 11
    fin = 0x11
    fin_head = bytearray(server_ack.build(server, client, sport, cport, sisn + 1 + total, cseq))
    fin_head[server_ack.tcp + 13] = fin
    w.write(t, bytes(fin_head))
    fin_head = bytearray(server_ack.build(client, server, cport, sport, cseq, sisn + 2 + total))
    fin_head[server_ack.tcp + 13] = fin
    w.write(t + 20, bytes(fin_head))
    w.write(t + 40, server_ack.build(server, client, sport, cport, sisn + 2 + total, cseq + 1))
    w.close()
    return w.packets


SHAPES = {"halfopen": halfopen, "reorder": reorder, "strayrst": strayrst}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in sys.argv[2:] or list(SHAPES):
        path = os.path.join(out, name + os.environ.get("ADVERSARIAL_SUFFIX", "") + ".pcap")
        packets = SHAPES[name](path)
        print(f"{path}: {packets} packets, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
