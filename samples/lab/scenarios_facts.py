#!/usr/bin/env python3
"""What tshark sees, per TCP connection, in the captures of samples/scenarios/
(standard library + tshark).

  scenarios_facts.py facts FILE
        one block per connection: endpoints, who closed first and how, TLS alerts,
        ALPN, HTTP status codes, HTTP/2 RST_STREAM and GOAWAY, key frame numbers
  scenarios_facts.py expected FILE RULE... [--extra PORT=k=v;k=v] [--facts-from FILE2]
        writes the expected.tsv rows for FILE on stdout. Each RULE is
        SERVERPORT=CLASS[@CLOSED_BY/CLOSE] (or *=CLASS...): the class of every
        connection to that server port; with @..., the connection must also show
        that first closer and close kind (client|server|none / fin|rst|none), or the
        command fails (record.sh then records the scenario again).
        --facts-from: take the facts from FILE2 (a full-size recording of the same
        traffic) instead, for variants tshark cannot read fully (snaplen 96).

Directions: the client is the side that sent the first SYN (without ACK).
closed_by/close: the side that sent the first FIN or RST of the connection, and which.
"""
import subprocess
import sys

# Lab ports and what tshark must decode them as (record.sh uses the same ports).
DECODE = {
    8443: "tls", 8444: "tls", 9443: "tls", 9444: "tls", 9445: "tls", 9446: "tls",
    8080: "http", 8081: "http",
    9101: "http", 9102: "http", 9103: "http", 9104: "http", 9105: "http", 9106: "http",
    9110: "http", 9111: "http", 9112: "http",
    # h2c upgrade: tshark's HTTP dissector follows "101 Switching Protocols" into HTTP/2
    9009: "http",
    9002: "http2", 9005: "http2", 9006: "http2", 9007: "http2", 9008: "http2",
}
FIELDS = ["frame.number", "frame.time_relative", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport",
          "ip.dst", "ipv6.dst", "tcp.dstport", "tcp.flags", "tcp.len", "tcp.payload",
          "tls.record.content_type", "tls.alert_message.desc", "tls.handshake.type",
          "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version",
          "tls.record.version", "http.response.code", "http.request.method",
          "http2.type", "http2.streamid", "http2.rst_stream.error",
          "http2.goaway.last_stream_id", "http2.goaway.error", "tls.handshake.version"]
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 50: "decode_error", 51: "decrypt_error",
          70: "protocol_version", 80: "internal_error", 90: "user_canceled",
          109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
          116: "certificate_required", 120: "no_application_protocol"}
H2ERR = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
         8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
         12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
H2TYPE = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
          6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
TLSVER = {"0x0304": "1.3", "0x0303": "1.2", "0x0302": "1.1", "0x0301": "1.0"}
# Classes whose first server bytes are the point of the verdict.
SHOW_FIRST_BYTES = {"plaintext_to_tls_port", "tls_to_plaintext_port", "h2_preface_to_http1",
                    "http1_to_h2_only", "partial_response_headers", "invalid_response",
                    "alpn_mismatch", "tls_handshake_aborted"}


def tshark(path, extra=()):
    args = ["tshark", "-r", path, "-o", "tcp.desegment_tcp_streams:TRUE"]
    for port, proto in DECODE.items():
        args += ["-d", "tcp.port==%d,%s" % (port, proto)]
    args += list(extra)
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("tshark failed on %s: %s" % (path, r.stderr))
    return r.stdout


def num_list(s):
    out = []
    for x in s.split(","):
        x = x.strip()
        if x:
            out.append(int(x, 0))
    return out


class Conn:
    def __init__(self, stream):
        self.stream = stream
        self.client = self.server = None
        self.frames = []          # (num, time, side, flags, tlen)
        self.first_close = None   # (num, side, "fin"/"rst")
        self.closes = []
        self.alerts = []          # (num, side, name)
        self.alpn_offered = None
        self.alpn_selected = None
        self.tls_version = None
        self.statuses = []        # (num, code)
        self.requests = []        # (num, method)
        self.rst_streams = []     # (num, side, stream, code)
        self.goaways = []         # (num, side, last, code)
        self.h2_frames = []       # (num, side, type, stream)
        self.first_bytes = {"client": b"", "server": b""}
        self.data_times = []      # (time, side, num)
        self.syns = 0
        self.tls_records = []     # (num, side, content types)

    def side(self, src):
        return "client" if src == self.client else "server"


def fmt_ep(ip, port):
    return "[%s]:%s" % (ip, port) if ":" in ip else "%s:%s" % (ip, port)


def load(path):
    out = tshark(path, ["-Y", "tcp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
                        "-E", "aggregator=,"] + [a for f in FIELDS for a in ("-e", f)])
    conns = {}
    order = []
    for line in out.splitlines():
        v = line.split("\t")
        v += [""] * (len(FIELDS) - len(v))
        d = dict(zip(FIELDS, v))
        num = int(d["frame.number"])
        t = float(d["frame.time_relative"])
        st = int(d["tcp.stream"])
        src = fmt_ep(d["ip.src"] or d["ipv6.src"], d["tcp.srcport"])
        dst = fmt_ep(d["ip.dst"] or d["ipv6.dst"], d["tcp.dstport"])
        flags = int(d["tcp.flags"], 16)
        tlen = int(d["tcp.len"] or 0)
        c = conns.get(st)
        if c is None:
            c = conns[st] = Conn(st)
            order.append(st)
        if c.client is None:
            if flags & SYN and not flags & ACK:
                c.client, c.server = src, dst
            elif flags & SYN:
                c.client, c.server = dst, src
            else:
                # no handshake seen: the higher port is the client
                if int(d["tcp.srcport"]) > int(d["tcp.dstport"]):
                    c.client, c.server = src, dst
                else:
                    c.client, c.server = dst, src
        side = c.side(src)
        c.frames.append((num, t, side, flags, tlen))
        if flags & SYN and not flags & ACK:
            c.syns += 1
        if flags & (FIN | RST):
            kind = "rst" if flags & RST else "fin"
            c.closes.append((num, side, kind, t))
            if c.first_close is None:
                c.first_close = (num, side, kind, t)
        if tlen:
            c.data_times.append((t, side, num))
            if len(c.first_bytes[side]) < 64 and d["tcp.payload"]:
                try:
                    c.first_bytes[side] += bytes.fromhex(d["tcp.payload"].replace(":", ""))
                except ValueError:
                    pass
        for a in num_list(d["tls.alert_message.desc"]):
            c.alerts.append((num, side, ALERTS.get(a, str(a))))
        hs = num_list(d["tls.handshake.type"])
        alpn = d["tls.handshake.extensions_alpn_str"]
        if 1 in hs and alpn and c.alpn_offered is None:
            c.alpn_offered = alpn.replace(",", "+")
        if 2 in hs:
            if alpn:
                c.alpn_selected = alpn
            sv = d["tls.handshake.extensions.supported_version"]
            hv = d["tls.handshake.version"].split(",")
            if side == "server" and sv:
                c.tls_version = TLSVER.get(sv.split(",")[-1], sv)
            elif side == "server":
                # ServerHello without supported_versions: its legacy version is the version
                c.tls_version = TLSVER.get(hv[-1], hv[-1]) if hv and hv[-1] else None
        ct = num_list(d["tls.record.content_type"])
        if ct:
            c.tls_records.append((num, side, ct))
        for code in num_list(d["http.response.code"]):
            if side == "server":
                c.statuses.append((num, code))
        for m in [x for x in d["http.request.method"].split(",") if x]:
            if side == "client":
                c.requests.append((num, m))
        types = num_list(d["http2.type"])
        sids = num_list(d["http2.streamid"])
        rst_errs = num_list(d["http2.rst_stream.error"])
        ga_last = num_list(d["http2.goaway.last_stream_id"])
        ga_err = num_list(d["http2.goaway.error"])
        ri = gi = 0
        for i, ty in enumerate(types):
            sid = sids[i] if i < len(sids) else -1
            c.h2_frames.append((num, side, H2TYPE.get(ty, str(ty)), sid))
            if ty == 3 and ri < len(rst_errs):
                c.rst_streams.append((num, side, sid, H2ERR.get(rst_errs[ri], str(rst_errs[ri]))))
                ri += 1
            if ty == 7 and gi < len(ga_last):
                c.goaways.append((num, side, ga_last[gi],
                                  H2ERR.get(ga_err[gi], str(ga_err[gi])) if gi < len(ga_err) else "?"))
                gi += 1
    return [conns[s] for s in order]


def printable(b, n=24):
    s = b[:n].decode("latin-1")
    out = []
    for ch in s:
        if ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif 32 <= ord(ch) < 127 and ch not in ";\t=":
            out.append(ch)
        else:
            out.append("\\x%02x" % ord(ch))
    return "".join(out)


def first_bytes_str(b):
    if not b:
        return "none"
    if b[0] in (0x14, 0x15, 0x16, 0x17) and b[1:2] == b"\x03":
        names = {0x14: "change_cipher_spec", 0x15: "alert", 0x16: "handshake", 0x17: "application_data"}
        return "tls_" + names[b[0]]
    # HTTP/2 frames: their types, while the 9-byte frame headers make sense
    frames, i = [], 0
    while i + 9 <= len(b) and b[i + 3] in H2TYPE and b[i + 5] & 0x80 == 0 and len(frames) < 4:
        frames.append(H2TYPE[b[i + 3]])
        i += 9 + int.from_bytes(b[i:i + 3], "big")
    if frames and b[:3] != b"HTT":
        return "h2_" + "+".join(frames)
    # up to the end of the first line, at most 24 bytes
    line = b.split(b"\r\n")[0]
    return printable(line if len(line) <= 24 else b, 24)


def details(c, cls):
    d = []
    if c.tls_version:
        d.append("tls=" + c.tls_version)
    if c.alpn_offered:
        d.append("alpn_offered=" + c.alpn_offered)
    if c.alpn_selected:
        d.append("alpn_selected=" + c.alpn_selected)
    fatal = [a for a in c.alerts if a[2] != "close_notify"]
    if fatal:
        d.append("alert=" + fatal[0][2])
        d.append("alert_from=" + fatal[0][1])
    statuses = [s for _, s in c.statuses]
    fb = c.first_bytes["server"]
    if not statuses and fb[:7] == b"HTTP/1." and fb[8:9] == b" " and fb[9:12].isdigit():
        statuses = [int(fb[9:12])]   # a status line tshark did not decode (port decoded as TLS)
    if statuses:
        d.append("status=" + ",".join(str(s) for s in statuses))
    rs = [r for r in c.rst_streams if r[1] == "server"]
    if rs:
        d.append("h2_rst_stream=" + ",".join("%d:%s" % (r[2], r[3]) for r in rs))
    ga = [g for g in c.goaways if g[1] == "server"]
    if ga:
        uniq = []
        for g in ga:   # a repeated identical GOAWAY is listed once
            x = "last:%d,code:%s" % (g[2], g[3])
            if x not in uniq:
                uniq.append(x)
        d.append("goaway=" + ",".join(uniq))
    if cls in SHOW_FIRST_BYTES:
        d.append("first_server_bytes=" + first_bytes_str(c.first_bytes["server"]))
    if cls == "connect_timeout":
        d.append("syns=%d" % c.syns)
    if cls in ("idle_close", "keepalive_race") and c.first_close:
        # gap between the last data segment before the first close and the close
        before = [t for t, s, n in c.data_times if n < c.first_close[0]]
        if before:
            d.append("idle=%.2fs" % (c.first_close[3] - max(before)))
    if cls == "response_timeout" and c.first_close:
        req = [t for t, s, n in c.data_times if s == "client" and n < c.first_close[0]]
        if req:
            d.append("wait=%.2fs" % (c.first_close[3] - max(req)))
    return ";".join(d)


def cmd_facts(path):
    for c in load(path):
        print("stream %d: %s -> %s" % (c.stream, c.client, c.server))
        print("  frames %d..%d, syns %d" % (c.frames[0][0], c.frames[-1][0], c.syns))
        for n, s, k, t in c.closes:
            print("  frame %d t=%.6f %s %s" % (n, t, s, k.upper()))
        for n, s, a in c.alerts:
            print("  frame %d alert from %s: %s" % (n, s, a))
        for n, s, ct in c.tls_records:
            print("  frame %d TLS records from %s: %s" % (n, s, ct))
        if c.alpn_offered or c.alpn_selected or c.tls_version:
            print("  tls %s alpn offered %s selected %s" % (c.tls_version, c.alpn_offered, c.alpn_selected))
        for n, m in c.requests:
            print("  frame %d request %s" % (n, m))
        for n, code in c.statuses:
            print("  frame %d response %d" % (n, code))
        for n, s, ty, sid in c.h2_frames:
            print("  frame %d h2 %s %s stream %d" % (n, s, ty, sid))
        for n, s, sid, code in c.rst_streams:
            print("  frame %d RST_STREAM from %s stream %d %s" % (n, s, sid, code))
        for n, s, last, code in c.goaways:
            print("  frame %d GOAWAY from %s last %d %s" % (n, s, last, code))
        for side in ("client", "server"):
            if c.first_bytes[side]:
                print("  first %s bytes: %s" % (side, printable(c.first_bytes[side], 48)))
        data = [(n, s) for t, s, n in c.data_times]
        print("  data frames: %s" % " ".join("%d%s" % (n, s[0]) for n, s in data[:40]))


def cmd_expected(path, args):
    rules, extra, facts_from = {}, {}, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--extra":
            port, kv = args[i + 1].split("=", 1)
            extra[port] = kv
            i += 2
            continue
        if a == "--facts-from":
            facts_from = args[i + 1]
            i += 2
            continue
        port, spec = a.split("=", 1)
        rules[port] = spec
        i += 1
    conns = load(facts_from or path)
    rows = ["client\tserver\tclass\tclosed_by\tclose\tdetails"]
    bad = []
    for c in conns:
        port = c.server.rsplit(":", 1)[1]
        spec = rules.get(port) or rules.get("*")
        if spec is None:
            bad.append("no rule for server port %s" % port)
            continue
        cls, _, want = spec.partition("@")
        closed_by, close = (c.first_close[1], c.first_close[2]) if c.first_close else ("none", "none")
        if want and "%s/%s" % (closed_by, close) not in want.split("|"):
            bad.append("%s -> %s: wanted %s, the capture shows %s/%s"
                       % (c.client, c.server, want, closed_by, close))
        det = details(c, cls)
        if port in extra:
            det = ";".join(x for x in (det, extra[port]) if x)
        rows.append("\t".join([c.client, c.server, cls, closed_by, close, det or "-"]))
    if bad:
        sys.stderr.write("\n".join("expected: " + b for b in bad) + "\n")
        sys.exit(1)
    print("\n".join(rows))


def cmd_race(path):
    """exit 0 if a connection shows the client sending data after the server's first
    FIN/RST, or a server RST right after client data (the keep-alive race)"""
    for c in load(path):
        if not c.first_close or c.first_close[1] != "server":
            continue
        after = [n for t, s, n in c.data_times if s == "client" and n > c.first_close[0]]
        if after:
            print("race: client data at frame %d after the server's %s at frame %d"
                  % (after[0], c.first_close[2].upper(), c.first_close[0]))
            return 0
        if c.first_close[2] == "rst":
            last = [(n, s) for t, s, n in c.data_times if n < c.first_close[0]]
            if last and last[-1][1] == "client" and len([1 for t, s, n in c.data_times if s == "client"]) > 1:
                print("race: server RST at frame %d answers client data at frame %d"
                      % (c.first_close[0], last[-1][0]))
                return 0
    print("no race in %s" % path)
    return 1


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "race":
        sys.exit(cmd_race(sys.argv[2]))
    if len(sys.argv) >= 3 and sys.argv[1] == "facts":
        cmd_facts(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "expected":
        cmd_expected(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
