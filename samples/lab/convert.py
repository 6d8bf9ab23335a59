#!/usr/bin/env python3
"""Derive sample captures from real recordings (standard library only).

Every function takes a real capture recorded by record-ingest.sh and rewrites
its framing only: packet bytes above the changed layer stay as recorded.

  convert.py vlan IN OUT [--vlan 100]                 802.1Q tag after the MACs
  convert.py qinq IN OUT [--outer-vlan 200 --inner-vlan 100]
                                                      802.1ad (0x88a8) + 802.1Q tags
  convert.py bigendian IN OUT                         pcap rewritten big-endian
  convert.py bigendian-pcapng IN OUT                  pcapng rewritten big-endian
  convert.py null IN OUT --linktype 0|108 --family-order le|be [--inet6-family N]
                                                      Ethernet -> DLT_NULL / DLT_LOOP
  convert.py raw IN OUT --linktype 101|228|229|12|14  Ethernet -> raw IP
  convert.py gzip-multi IN OUT                        two gzip members, concatenated
"""
import argparse
import gzip
import struct
import sys

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8


class Pcap:
    def __init__(self):
        self.endian = "<"
        self.magic = PCAP_MAGIC_US
        self.version = (2, 4)
        self.thiszone = 0
        self.sigfigs = 0
        self.snaplen = 262144
        self.linktype = 1
        self.records = []  # (ts_sec, ts_frac, orig_len, data)


def read_pcap(path):
    raw = open(path, "rb").read()
    p = Pcap()
    for e in "<>":
        magic = struct.unpack(e + "I", raw[:4])[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            p.endian, p.magic = e, magic
            break
    else:
        sys.exit("%s: not a pcap file" % path)
    e = p.endian
    _, vmaj, vmin, p.thiszone, p.sigfigs, p.snaplen, p.linktype = struct.unpack(e + "IHHiIII", raw[:24])
    p.version = (vmaj, vmin)
    off = 24
    while off < len(raw):
        if off + 16 > len(raw):
            sys.exit("%s: truncated record header at %d" % (path, off))
        sec, frac, incl, orig = struct.unpack(e + "IIII", raw[off:off + 16])
        off += 16
        data = raw[off:off + incl]
        if len(data) != incl:
            sys.exit("%s: truncated record at %d" % (path, off))
        off += incl
        p.records.append((sec, frac, orig, data))
    return p


def write_pcap(path, p, endian=None, linktype=None):
    e = endian or p.endian
    out = [struct.pack(e + "IHHiIII", p.magic, p.version[0], p.version[1], p.thiszone,
                       p.sigfigs, p.snaplen, p.linktype if linktype is None else linktype)]
    for sec, frac, orig, data in p.records:
        out.append(struct.pack(e + "IIII", sec, frac, len(data), orig))
        out.append(data)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def map_ethernet(p, fn, new_linktype):
    """Apply fn(data) -> (new_data, length_delta) to every Ethernet record."""
    if p.linktype != 1:
        sys.exit("input link type is %d, expected 1 (Ethernet)" % p.linktype)
    recs = []
    for sec, frac, orig, data in p.records:
        if len(data) < 14:
            sys.exit("record shorter than an Ethernet header")
        new, delta = fn(data)
        recs.append((sec, frac, orig + delta, new))
    p.records = recs
    p.linktype = new_linktype
    return p


def ethertype(data):
    return struct.unpack(">H", data[12:14])[0]


def cmd_vlan(a):
    p = read_pcap(a.input)
    tag = struct.pack(">HH", ETH_VLAN, a.vlan & 0x0FFF)
    write_pcap(a.output, map_ethernet(p, lambda d: (d[:12] + tag + d[12:], 4), 1))


def cmd_qinq(a):
    p = read_pcap(a.input)
    tags = struct.pack(">HHHH", ETH_QINQ, a.outer_vlan & 0x0FFF, ETH_VLAN, a.inner_vlan & 0x0FFF)
    write_pcap(a.output, map_ethernet(p, lambda d: (d[:12] + tags + d[12:], 8), 1))


def cmd_bigendian(a):
    p = read_pcap(a.input)
    write_pcap(a.output, p, endian=">")


def cmd_null(a):
    p = read_pcap(a.input)
    order = "<" if a.family_order == "le" else ">"

    def fn(d):
        et = ethertype(d)
        if et == ETH_IPV4:
            fam = 2
        elif et == ETH_IPV6:
            fam = a.inet6_family
        else:
            sys.exit("ethertype 0x%04x cannot be expressed as an address family" % et)
        return struct.pack(order + "I", fam) + d[14:], -10

    write_pcap(a.output, map_ethernet(p, fn, a.linktype))


def cmd_raw(a):
    p = read_pcap(a.input)
    allowed = {228: (ETH_IPV4,), 229: (ETH_IPV6,)}.get(a.linktype, (ETH_IPV4, ETH_IPV6))

    def fn(d):
        et = ethertype(d)
        if et not in allowed:
            sys.exit("ethertype 0x%04x not allowed for link type %d" % (et, a.linktype))
        return d[14:], -14

    write_pcap(a.output, map_ethernet(p, fn, a.linktype))


def cmd_gzip_multi(a):
    raw = open(a.input, "rb").read()
    half = len(raw) // 2
    with open(a.output, "wb") as f:
        f.write(gzip.compress(raw[:half], compresslevel=9, mtime=0))
        f.write(gzip.compress(raw[half:], compresslevel=9, mtime=0))


# ------------------------------------------------------------------ pcapng
SHB, IDB, EPB, SPB, ISB, NRB, DSB, OPB = 0x0A0D0D0A, 1, 6, 3, 5, 4, 0x0A, 2

# Option value layouts per block type: code -> struct format of the value
# (None = opaque bytes / UTF-8 string, copied unchanged).
OPT_FORMATS = {
    SHB: {},
    IDB: {8: "Q", 9: "B", 10: "I", 13: "B", 14: "q", 16: "Q", 17: "Q"},
    EPB: {2: "I", 4: "Q", 5: "Q", 6: "I"},
    ISB: {2: "II", 3: "II", 4: "Q", 5: "Q", 6: "Q", 7: "Q", 8: "Q"},
    NRB: {},
}
STRING_OPTS = {
    SHB: {1, 2, 3, 4},
    IDB: {1, 2, 3, 4, 5, 6, 7, 11, 12, 15},   # 6 (MAC) / 7 (EUI) / 11 (filter) / 15 (hardware) are byte strings
    EPB: {1, 3, 7},                           # comment, hash, verdict: byte strings
    ISB: {1},
    NRB: {1, 2, 3, 4},
}


def swap_options(buf, block_type, ei, eo, path):
    out, off = [], 0
    fmts = OPT_FORMATS.get(block_type, {})
    strs = STRING_OPTS.get(block_type, {1})
    while off < len(buf):
        if off + 4 > len(buf):
            sys.exit("%s: truncated option" % path)
        code, length = struct.unpack(ei + "HH", buf[off:off + 4])
        val = buf[off + 4: off + 4 + length]
        pad = (-length) % 4
        padding = buf[off + 4 + length: off + 4 + length + pad]
        off += 4 + length + pad
        if code == 0:
            out.append(struct.pack(eo + "HH", 0, 0))
            break
        if code in fmts:
            fmt = fmts[code]
            if struct.calcsize(fmt) != length:
                sys.exit("%s: option %d of block %d has length %d" % (path, code, block_type, length))
            val = struct.pack(eo + fmt, *struct.unpack(ei + fmt, val))
        elif code in strs:
            pass
        else:
            sys.exit("%s: don't know how to byte-swap option %d of block type %d" % (path, code, block_type))
        out.append(struct.pack(eo + "HH", code, length) + val + padding)
    return b"".join(out)


def cmd_bigendian_pcapng(a):
    raw = open(a.input, "rb").read()
    out, off = [], 0
    ei, eo = "<", ">"
    while off < len(raw):
        btype_raw = raw[off:off + 4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":
            bom = raw[off + 8: off + 12]
            ei = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack(ei + "II", raw[off:off + 8])
        body = raw[off + 8: off + blen - 4]
        trailer = struct.unpack(ei + "I", raw[off + blen - 4: off + blen])[0]
        if trailer != blen:
            sys.exit("%s: bad block length at %d" % (a.input, off))
        if btype == SHB:
            magic, vmaj, vmin, seclen = struct.unpack(ei + "IHHq", body[:16])
            nb = struct.pack(eo + "IHHq", magic, vmaj, vmin, seclen) + swap_options(body[16:], SHB, ei, eo, a.input)
        elif btype == IDB:
            lt, res, snap = struct.unpack(ei + "HHI", body[:8])
            nb = struct.pack(eo + "HHI", lt, res, snap) + swap_options(body[8:], IDB, ei, eo, a.input)
        elif btype == EPB:
            ifid, tsh, tsl, cap, orig = struct.unpack(ei + "IIIII", body[:20])
            padded = cap + (-cap) % 4
            nb = (struct.pack(eo + "IIIII", ifid, tsh, tsl, cap, orig) + body[20:20 + padded]
                  + swap_options(body[20 + padded:], EPB, ei, eo, a.input))
        elif btype == SPB:
            nb = struct.pack(eo + "I", *struct.unpack(ei + "I", body[:4])) + body[4:]
        elif btype == ISB:
            ifid, tsh, tsl = struct.unpack(ei + "III", body[:12])
            nb = struct.pack(eo + "III", ifid, tsh, tsl) + swap_options(body[12:], ISB, ei, eo, a.input)
        else:
            sys.exit("%s: block type 0x%x not supported by this converter" % (a.input, btype))
        if len(nb) != len(body):
            sys.exit("internal error: block length changed")
        out.append(struct.pack(eo + "II", btype, blen) + nb + struct.pack(eo + "I", blen))
        off += blen
    with open(a.output, "wb") as f:
        f.write(b"".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, fn):
        s = sub.add_parser(name)
        s.add_argument("input")
        s.add_argument("output")
        s.set_defaults(fn=fn)
        return s

    add("vlan", cmd_vlan).add_argument("--vlan", type=int, default=100)
    s = add("qinq", cmd_qinq)
    s.add_argument("--outer-vlan", type=int, default=200)
    s.add_argument("--inner-vlan", type=int, default=100)
    add("bigendian", cmd_bigendian)
    add("bigendian-pcapng", cmd_bigendian_pcapng)
    s = add("null", cmd_null)
    s.add_argument("--linktype", type=int, choices=(0, 108), required=True)
    s.add_argument("--family-order", choices=("le", "be"), required=True)
    s.add_argument("--inet6-family", type=int, default=30,
                   help="address family value for IPv6 (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS)")
    add("raw", cmd_raw).add_argument("--linktype", type=int, choices=(12, 14, 101, 228, 229), required=True)
    add("gzip-multi", cmd_gzip_multi)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
