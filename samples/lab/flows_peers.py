#!/usr/bin/env python3
"""The python3 socket programs (clients and small servers) behind samples/flows/.

Called by record-flows.sh, one role per run:

  reuse-client HOST PORT SRCPORT COUNT   COUNT HTTP/1.0 requests from one fixed source
                                         port (SO_REUSEADDR); the server closes first
  mid-client HOST PORT READYFILE         keep-alive connection, a request every 150 ms
                                         for 3 s (the 11th one for /40k.txt), then close
  simclose-server PORT / simclose-client HOST PORT
                                         exchange a little data, then both shutdown(SHUT_WR)
                                         at the instant the server announced
  rst-server PORT / rst-client HOST PORT two connections: 1) server answers and closes,
                                         client writes after the FIN; 2) server closes
                                         with unread bytes in its receive buffer
  keepalive-client HOST PORT IDLE        SO_KEEPALIVE with TCP_KEEPIDLE=1 TCP_KEEPINTVL=1,
                                         a request, IDLE seconds idle, a request, close

Every loop is bounded and every socket has a timeout.
"""
import socket
import sys
import time


def log(msg):
    print("flows_peers: %s" % msg, file=sys.stderr, flush=True)


def http_get(s, path, close=False, version="1.1"):
    """Sends one GET and reads the whole response (by Content-Length). Returns (status line, body)."""
    req = "GET %s HTTP/%s\r\nHost: localhost\r\nUser-Agent: rstscope-lab\r\n%s\r\n" % (
        path, version, "Connection: close\r\n" if close else "")
    s.sendall(req.encode())
    buf = b""
    for _ in range(10000):
        if b"\r\n\r\n" in buf:
            break
        c = s.recv(65536)
        if not c:
            raise SystemExit("connection closed before the response headers")
        buf += c
    head, body = buf.split(b"\r\n\r\n", 1)
    clen = int([l.split(b":")[1] for l in head.split(b"\r\n")
                if l.lower().startswith(b"content-length:")][0])
    for _ in range(10000):
        if len(body) >= clen:
            break
        c = s.recv(65536)
        if not c:
            raise SystemExit("connection closed inside the response body")
        body += c
    return head.split(b"\r\n")[0].decode(), body


def read_to_eof(s, limit=1000):
    n = 0
    for _ in range(limit):
        c = s.recv(65536)
        if not c:
            return n
        n += len(c)
    raise SystemExit("no EOF after %d reads" % limit)


def reuse_client(host, port, srcport, count):
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(10)
        s.bind((host, srcport))
        s.connect((host, port))
        status, body = http_get(s, "/1k.txt", version="1.0")
        n = read_to_eof(s)          # HTTP/1.0 without keep-alive: nginx closes first
        s.close()
        log("reuse-client: connection %d from port %d: %s, %d body bytes, %d after" % (
            i + 1, srcport, status, len(body), n))
        time.sleep(0.1)


def mid_client(host, port, ready):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    t0 = time.monotonic()
    log("mid-client: connected from port %d at %.6f" % (s.getsockname()[1], time.time()))
    open(ready, "w").write("%.6f\n" % time.time())
    for i in range(20):
        path = "/40k.txt" if i == 10 else "/small.txt"
        status, body = http_get(s, path)
        log("mid-client: request %d %s at %.6f: %s, %d bytes" % (i + 1, path, time.time(), status, len(body)))
        delay = t0 + 0.15 * (i + 1) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    s.close()                        # the client closes first
    log("mid-client: closed at %.6f" % time.time())


def simclose_server(port):
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port))
    l.listen(1)
    l.settimeout(20)
    c, _ = l.accept()
    c.settimeout(10)
    at = time.time() + 0.5
    c.sendall(b"hello from the server; both sides close at %.6f\n" % at)
    got = c.recv(4096)
    log("simclose-server: got %r" % got)
    time.sleep(max(0.0, at - time.time()))
    c.shutdown(socket.SHUT_WR)
    log("simclose-server: shutdown(SHUT_WR) at %.6f" % time.time())
    n = read_to_eof(c)
    c.close()
    l.close()
    log("simclose-server: EOF after %d more bytes" % n)


def simclose_client(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    line = b""
    for _ in range(100):
        if line.endswith(b"\n"):
            break
        c = s.recv(4096)
        if not c:
            raise SystemExit("simclose-client: early EOF")
        line += c
    at = float(line.split()[-1])
    s.sendall(b"hello from the client\n")
    time.sleep(max(0.0, at - time.time()))
    s.shutdown(socket.SHUT_WR)
    log("simclose-client: shutdown(SHUT_WR) at %.6f" % time.time())
    n = read_to_eof(s)
    s.close()
    log("simclose-client: EOF after %d more bytes" % n)


RESPONSE = (b"HTTP/1.0 200 OK\r\nServer: rstscope-lab-python\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 13\r\n\r\nhello, world\n")


def rst_server(port):
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port))
    l.listen(2)
    l.settimeout(20)
    # 1) read the whole request, answer, close: a normal FIN.
    c, _ = l.accept()
    c.settimeout(10)
    req = b""
    for _ in range(100):
        if b"\r\n\r\n" in req:
            break
        d = c.recv(4096)
        if not d:
            break
        req += d
    c.sendall(RESPONSE)
    c.close()
    log("rst-server: connection 1: read %d request bytes, answered, closed" % len(req))
    # 2) read only the first 16 bytes of the request, answer, close: the rest of
    # the request is still unread in the receive buffer.
    c, _ = l.accept()
    c.settimeout(10)
    first = c.recv(16)
    time.sleep(0.2)                  # let the whole request arrive
    c.sendall(RESPONSE)
    c.close()
    log("rst-server: connection 2: read %d of the request bytes, answered, closed" % len(first))
    l.close()


def rst_client(host, port):
    req = b"GET /hello HTTP/1.0\r\nHost: localhost\r\nUser-Agent: rstscope-lab\r\n\r\n"
    # 1) after the server's FIN, write more: the server's kernel answers with RST.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    s.sendall(req)
    n = read_to_eof(s)               # response, then the FIN (recv returns b"")
    log("rst-client: connection 1: %d response bytes, then EOF" % n)
    time.sleep(0.1)
    s.send(b"one more line after the server's FIN\n")
    time.sleep(0.2)
    try:
        s.send(b"and another\n")
        log("rst-client: connection 1: second write after FIN accepted (no RST yet?)")
    except OSError as e:
        log("rst-client: connection 1: second write after FIN: %s" % e)
    s.close()
    time.sleep(0.1)
    # 2) send a request with a body the server never reads.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    body = b"x" * 200
    s.sendall(b"POST /upload HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    try:
        for _ in range(100):
            d = s.recv(4096)
            if not d:
                break
            got += d
        log("rst-client: connection 2: %d response bytes, then EOF" % len(got))
    except OSError as e:
        log("rst-client: connection 2: %d response bytes, then %s" % (len(got), e))
    s.close()


def keepalive_client(host, port, idle):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
    s.settimeout(10)
    s.connect((host, port))
    status, body = http_get(s, "/1k.txt")
    log("keepalive-client: %s, %d bytes; idle %.1f s" % (status, len(body), idle))
    time.sleep(idle)
    status, body = http_get(s, "/1k.txt")
    log("keepalive-client: %s, %d bytes; closing" % (status, len(body)))
    s.close()


def main():
    role, args = sys.argv[1], sys.argv[2:]
    if role == "reuse-client":
        reuse_client(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif role == "mid-client":
        mid_client(args[0], int(args[1]), args[2])
    elif role == "simclose-server":
        simclose_server(int(args[0]))
    elif role == "simclose-client":
        simclose_client(args[0], int(args[1]))
    elif role == "rst-server":
        rst_server(int(args[0]))
    elif role == "rst-client":
        rst_client(args[0], int(args[1]))
    elif role == "keepalive-client":
        keepalive_client(args[0], int(args[1]), float(args[2]))
    else:
        raise SystemExit("unknown role " + role)


if __name__ == "__main__":
    main()
