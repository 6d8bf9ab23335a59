#!/usr/bin/env node
// Servers and clients for samples/lab/record.sh (Node.js built-in modules only).
//
//   node scenarios_peers.js MODE [ARGS...]
//
// Every server prints "listening" on stdout once bound, and exits by itself after
// MAX_SECONDS (env, default 120) whatever happens; SIGTERM stops it at once.
// Every client has a hard time limit too and exits 0 when it saw what it reports.
'use strict';
const fs = require('fs');
const net = require('net');
const tls = require('tls');
const http = require('http');
const https = require('https');
const http2 = require('http2');

const MAX_SECONDS = Number(process.env.MAX_SECONDS || 120);
setTimeout(() => { log('time limit reached, exiting'); process.exit(3); }, MAX_SECONDS * 1000).unref();
process.on('SIGTERM', () => process.exit(0));

const [mode, ...args] = process.argv.slice(2);
function log(...a) { process.stderr.write(`[peers ${mode}] ${a.join(' ')}\n`); }
function host() { return process.env.LAB_HOST || '127.0.0.1'; }
function listening(server, port) {
  server.listen(port, host(), () => { process.stdout.write('listening\n'); log('listening on', host(), port); });
}
function tlsOpts(keyFile, certFile) {
  return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
}
const BODY = 'rstscope lab response body\n';

// Reads one HTTP/1 request head on a raw socket, then calls fn(socket).
function onRequestHead(socket, fn) {
  let buf = '';
  let done = false;
  socket.on('data', (d) => {
    if (done) return;
    buf += d.toString('latin1');
    if (buf.includes('\r\n\r\n')) { done = true; fn(socket, buf); }
  });
  socket.on('error', (e) => log('socket error', e.code));
}

const modes = {
  // ---------------------------------------------------------------- TLS servers
  // http2.createSecureServer (h2 only, allowHTTP1 false)
  'tls-h2-server'(port, key, cert) {
    const s = http2.createSecureServer(tlsOpts(key, cert));
    s.on('stream', (st) => { st.respond({ ':status': 200 }); st.end(BODY); });
    s.on('tlsClientError', (e) => log('tlsClientError', e.code || '', e.message));
    s.on('sessionError', (e) => log('sessionError', e.code || '', e.message));
    listening(s, Number(port));
  },
  'https-server'(port, key, cert) {
    const s = https.createServer(tlsOpts(key, cert), (req, res) => res.end(BODY));
    s.on('tlsClientError', (e) => log('tlsClientError', e.code || '', e.message));
    s.on('clientError', (e, sock) => { log('clientError', e.code || '', e.message); sock.destroy(); });
    listening(s, Number(port));
  },
  // tls server speaking only http/1.1 (ALPN): a client offering only h2 gets no match
  'alpn-server'(port, key, cert) {
    const s = tls.createServer({ ...tlsOpts(key, cert), ALPNProtocols: ['http/1.1'] }, (sock) => {
      log('secure connection, alpn', sock.alpnProtocol);
      onRequestHead(sock, (so) => so.end('HTTP/1.1 200 OK\r\nContent-Length: ' + BODY.length + '\r\n\r\n' + BODY));
    });
    s.on('tlsClientError', (e) => log('tlsClientError', e.code || '', e.message));
    listening(s, Number(port));
  },
  // ------------------------------------------------------------ h2c servers
  // behaviour: ok | goaway-graceful | goaway-error | rst-odd
  'h2c-server'(port, behaviour = 'ok') {
    const s = http2.createServer();
    let n = 0;
    s.on('session', (sess) => {
      sess.on('error', (e) => log('session error', e.code || '', e.message));
      sess.on('goaway', (c, l) => log('client goaway', c, l));
    });
    s.on('sessionError', (e) => log('sessionError', e.code || '', e.message));
    s.on('unknownProtocol', (sock) => log('unknownProtocol'));
    s.on('stream', (st, headers) => {
      n += 1;
      const i = n;
      const sid = st.id;
      st.on('error', (e) => log('stream', sid, 'error', e.code || ''));
      if (behaviour === 'rst-odd' && i % 2 === 1) {
        log('stream', sid, 'request', i, '-> RST_STREAM REFUSED_STREAM');
        st.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      if (behaviour.startsWith('goaway') && sid > 5) {
        // streams above 5 are never answered; on the first of them, send GOAWAY(last 5)
        const sess = st.session;
        if (!sess.__goaway) {
          sess.__goaway = true;
          setTimeout(() => {
            if (sess.destroyed) return;
            const code = behaviour === 'goaway-error' ? http2.constants.NGHTTP2_ENHANCE_YOUR_CALM
              : http2.constants.NGHTTP2_NO_ERROR;
            log('GOAWAY code', code, 'last stream 5');
            sess.goaway(code, 5);
            // error: tear the session down; graceful: close once open streams are done
            setTimeout(() => {
              if (sess.destroyed) return;
              if (behaviour === 'goaway-error') sess.destroy(); else sess.close();
            }, 50);
          }, 100);
        }
        return;
      }
      setTimeout(() => {
        if (st.destroyed || st.closed) return;
        st.respond({ ':status': 200, 'content-type': 'text/plain' });
        st.end(BODY);
      }, 20);
    });
    listening(s, Number(port));
  },
  // ---------------------------------------------------------- HTTP/1 servers
  // Node http server with a keepAliveTimeout (ms)
  'http-server'(port, keepAliveMs = '5000') {
    const s = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => { res.setHeader('Content-Type', 'text/plain'); res.end(BODY); });
    });
    s.keepAliveTimeout = Number(keepAliveMs);
    s.on('clientError', (e, sock) => {
      log('clientError', e.code || '', e.message, JSON.stringify((e.rawPacket || '').toString('latin1').slice(0, 40)));
      if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); else sock.destroy();
    });
    listening(s, Number(port));
  },
  // Node http server answering with a complete chunked body: no Content-Length, so
  // Node uses Transfer-Encoding: chunked; N res.write()s 20 ms apart (each its own
  // chunk, and its own segment), then res.end() (the last chunk "0\r\n\r\n")
  'chunked-server'(port, chunks = '3') {
    const s = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        log('request', req.method, req.url, '-> chunked,', chunks, 'chunks');
        res.setHeader('Content-Type', 'text/plain');
        let i = 0;
        const next = () => {
          if (res.destroyed) return;
          if (i === Number(chunks)) { res.end(); return; }
          i += 1;
          res.write(`chunk ${i} of ${chunks}: ${BODY}`);
          setTimeout(next, 20);
        };
        next();
      });
    });
    listening(s, Number(port));
  },
  // Node http server that answers after DELAY ms
  'slow-server'(port, delayMs = '5000') {
    const s = http.createServer((req, res) => {
      log('request', req.method, req.url, 'answering in', delayMs, 'ms');
      req.on('close', () => log('request socket closed by peer'));
      setTimeout(() => {
        log('answering now; socket destroyed:', res.socket ? res.socket.destroyed : 'n/a');
        res.end(BODY);
      }, Number(delayMs));
    });
    listening(s, Number(port));
  },
  // raw upstreams: behaviour fin | rst | partial | chunked-trunc | short-cl
  'raw-upstream'(port, behaviour) {
    const s = net.createServer((sock) => {
      onRequestHead(sock, (so, head) => {
        log('request', JSON.stringify(head.split('\r\n')[0]), '->', behaviour);
        setTimeout(() => {
          if (behaviour === 'fin') so.end();
          else if (behaviour === 'rst') so.resetAndDestroy();
          else if (behaviour === 'partial') so.end('HTTP/1.1 200 OK\r\nContent-Ty');
          else if (behaviour === 'chunked-trunc') {
            so.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
            so.write('1b\r\n' + BODY + '\r\n');
            setTimeout(() => so.end('1b\r\n' + BODY + '\r\n'), 50); // no last chunk "0\r\n\r\n"
          } else if (behaviour === 'short-cl') {
            so.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n');
            setTimeout(() => so.end('x'.repeat(299) + '\n'), 50); // 300 of 1000 bytes
          }
        }, 50);
      });
    });
    listening(s, Number(port));
  },
  // ---------------------------------------------------------------- clients
  // keep-alive reuse: GET, wait DELAY ms after the response, GET again on the same socket.
  // Like a proxy's idle pooled connection, the socket is not watched while idle
  // (allowHalfOpen: a FIN from the server does not close it), so request 2 is sent
  // even when the server's FIN has already arrived.
  'ka-client'(port, delayMs) {
    const sock = net.connect({ port: Number(port), host: host(), allowHalfOpen: true });
    const req = `GET /ka HTTP/1.1\r\nHost: ${host()}:${port}\r\nConnection: keep-alive\r\n\r\n`;
    let buf = '';
    let phase = 0;
    let tResp = 0;
    const t0 = Date.now();
    const ms = () => (Date.now() - t0) + 'ms';
    sock.on('connect', () => { sock.write(req); log(ms(), 'request 1 sent'); });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (phase === 0 && buf.includes(BODY)) {
        phase = 1; tResp = Date.now(); buf = '';
        log(ms(), 'response 1 complete, waiting', delayMs, 'ms');
        setTimeout(() => {
          log(ms(), 'sending request 2, readable ended:', sock.readableEnded, 'destroyed:', sock.destroyed);
          if (!sock.destroyed) sock.write(req);
          setTimeout(() => { log(ms(), 'closing'); sock.destroy(); }, 1000);
          phase = 2;
        }, Number(delayMs));
      } else if (phase === 2) {
        log(ms(), 'got data after request 2:', JSON.stringify(buf.slice(0, 20)));
      }
    });
    sock.on('end', () => log(ms(), 'server FIN received (idle', Date.now() - tResp, 'ms after response 1)'));
    sock.on('error', (e) => log(ms(), 'error', e.code));
    sock.on('close', () => { log(ms(), 'closed'); process.exit(0); });
    setTimeout(() => { log('giving up'); sock.destroy(); process.exit(0); }, Number(delayMs) + 3000);
  },
  // idle client: GET, then stay idle until the server closes (at most MAX ms), then close
  'idle-client'(port, maxMs = '6000') {
    const sock = net.connect(Number(port), host());
    const t0 = Date.now();
    sock.on('connect', () => sock.write(`GET /idle HTTP/1.1\r\nHost: ${host()}:${port}\r\n\r\n`));
    sock.on('data', () => log(Date.now() - t0, 'ms response data'));
    sock.on('end', () => { log(Date.now() - t0, 'ms server closed; closing too'); sock.end(); });
    sock.on('error', (e) => log('error', e.code));
    sock.on('close', () => process.exit(0));
    setTimeout(() => { log('server never closed'); sock.destroy(); process.exit(1); }, Number(maxMs));
  },
  // h2c client: N concurrent GETs, reports each stream's outcome, closes the session
  'h2-client'(port, n = '6') {
    const url = `http://${host().includes(':') ? '[' + host() + ']' : host()}:${port}`;
    const client = http2.connect(url);
    let left = Number(n);
    const finish = () => { client.close(); };
    client.on('error', (e) => log('session error', e.code || '', e.message));
    client.on('goaway', (code, last) => log('GOAWAY received code', code, 'last', last));
    client.on('close', () => { log('session closed'); process.exit(0); });
    for (let i = 0; i < Number(n); i += 1) {
      const req = client.request({ ':path': '/r' + i });
      req.on('response', (h) => log('stream', req.id, 'status', h[':status']));
      req.on('data', () => {});
      req.on('error', (e) => log('stream', req.id, 'error', e.code || '', e.message));
      req.on('close', () => {
        log('stream', req.id, 'closed rstCode', req.rstCode);
        left -= 1;
        if (left === 0) setTimeout(finish, 50);
      });
      req.end();
    }
    setTimeout(() => { log('time limit, destroying session'); client.destroy(); process.exit(0); }, 5000);
  },
};

if (!modes[mode]) {
  process.stderr.write('usage: scenarios_peers.js ' + Object.keys(modes).join('|') + ' ARGS...\n');
  process.exit(2);
}
modes[mode](...args);
