//! Names and numbers from outside: HTTP/2 error codes (RFC 9113 §7), TLS alert descriptions
//! (RFC 8446 §6), the timeouts that common servers, proxies and load balancers use by
//! default, and what Envoy, nginx and HAProxy print for each failure class.
//!
//! Source of the strings and defaults: ../shared/reference/proxy-vocabulary.md, which cites
//! the projects' own code and documentation.

use serde::Serialize;

use super::Class;

/// RFC 9113 §7 name of an HTTP/2 error code.
pub fn h2_error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("UNKNOWN_0x{code:x}"), |n| (*n).to_string())
}

/// RFC 8446 §6 (and RFC 5246) name of a TLS alert description.
pub fn tls_alert_name(d: u8) -> String {
    match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return format!("alert_{d}"),
    }
    .to_string()
}

/// A default timeout of some software, to match an observed wait or idle time against.
#[derive(Debug, Clone, Copy)]
pub struct KnownTimeout {
    pub seconds: f64,
    pub what: &'static str,
}

/// Idle timeouts after which servers (and load balancers) close a kept-alive connection.
pub const IDLE_TIMEOUTS: &[KnownTimeout] = &[
    KnownTimeout {
        seconds: 2.0,
        what: "the gunicorn keepalive default (2 s)",
    },
    KnownTimeout {
        seconds: 5.0,
        what: "the Node.js keepAliveTimeout default (5 s), also uvicorn timeout_keep_alive and Apache KeepAliveTimeout",
    },
    KnownTimeout {
        seconds: 6.0,
        what: "the Node.js keepAliveTimeout default plus its 1 s buffer (Node 22.19+/24.6+)",
    },
    KnownTimeout {
        seconds: 20.0,
        what: "the Puma persistent_timeout before 7.0 (20 s), Tomcat's shipped connectionTimeout",
    },
    KnownTimeout {
        seconds: 60.0,
        what: "the AWS ALB idle timeout (60 s), nginx proxy_read_timeout/keepalive_timeout in upstreams (60 s)",
    },
    KnownTimeout {
        seconds: 65.0,
        what: "the Puma 7 persistent_timeout and Debian's nginx keepalive_timeout (65 s)",
    },
    KnownTimeout {
        seconds: 75.0,
        what: "the nginx keepalive_timeout default (75 s)",
    },
    KnownTimeout {
        seconds: 90.0,
        what: "the Go http.Transport IdleConnTimeout (90 s)",
    },
    KnownTimeout {
        seconds: 350.0,
        what: "the AWS NLB / NAT gateway idle timeout (350 s)",
    },
    KnownTimeout {
        seconds: 600.0,
        what: "the GCP load balancer backend keepalive (600 s)",
    },
];

/// How long proxies wait for a response before giving up.
pub const RESPONSE_TIMEOUTS: &[KnownTimeout] = &[
    KnownTimeout {
        seconds: 15.0,
        what: "the Envoy route timeout default (15 s)",
    },
    KnownTimeout {
        seconds: 30.0,
        what: "the GCP backend service timeout (30 s), common HAProxy timeout server",
    },
    KnownTimeout {
        seconds: 50.0,
        what: "the HAProxy sample configs' timeout server (50 s)",
    },
    KnownTimeout {
        seconds: 60.0,
        what: "the nginx proxy_read_timeout (60 s), AWS ALB idle timeout (60 s)",
    },
    KnownTimeout {
        seconds: 120.0,
        what: "the Node.js server.timeout before v13 (120 s)",
    },
];

/// How long clients and proxies try to connect.
pub const CONNECT_TIMEOUTS: &[KnownTimeout] = &[
    KnownTimeout {
        seconds: 5.0,
        what: "the Envoy cluster connect_timeout default (5 s)",
    },
    KnownTimeout {
        seconds: 10.0,
        what: "the Istio connect timeout / AWS ALB target connect timeout (10 s)",
    },
    KnownTimeout {
        seconds: 60.0,
        what: "the nginx proxy_connect_timeout default (60 s)",
    },
    KnownTimeout {
        seconds: 127.0,
        what: "the Linux giving up after tcp_syn_retries=6 (about 127 s)",
    },
];

/// The known timeout an observed duration matches: within 5 % or 250 ms, whichever is more.
pub fn match_timeout(seconds: f64, table: &[KnownTimeout]) -> Option<KnownTimeout> {
    table
        .iter()
        .copied()
        .find(|t| (seconds - t.seconds).abs() <= (t.seconds * 0.05).max(0.25))
}

/// A configured timeout: an observed wait of a whole number of seconds (within 1.5 % or
/// 20 ms). People set timeouts to round values; waits that end by chance rarely are.
pub fn round_seconds(seconds: f64) -> Option<u64> {
    let whole = seconds.round();
    (whole >= 1.0 && (seconds - whole).abs() <= (whole * 0.015).max(0.02)).then_some(whole as u64)
}

/// What the common proxies print for a failure class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyMessages {
    /// Envoy / Istio: the local reply text, response flag and status.
    pub envoy: String,
    /// nginx: the error.log line and the status it returns.
    pub nginx: String,
    /// HAProxy: the termination state.
    pub haproxy: String,
}

fn msgs(envoy: &str, nginx: &str, haproxy: &str) -> ProxyMessages {
    ProxyMessages {
        envoy: envoy.to_string(),
        nginx: nginx.to_string(),
        haproxy: haproxy.to_string(),
    }
}

const ENVOY_PREFIX: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

/// The messages for a class; `detail` refines some (an alert name, an HTTP/2 code).
pub fn proxy_messages(class: Class, detail: Option<&str>) -> Option<ProxyMessages> {
    let d = detail.unwrap_or("");
    let m = match class {
        Class::Ok | Class::IdleClose | Class::IncompleteCapture => return None,
        Class::ConnectRefused => msgs(
            &format!(
                "{ENVOY_PREFIX}remote connection failure, transport failure reason: delayed connect error: Connection refused (older Envoy: connection failure); flag UF; 503"
            ),
            "connect() failed (111: Connection refused) while connecting to upstream; 502",
            "SC (502/503)",
        ),
        Class::ConnectTimeout => msgs(
            &format!(
                "{ENVOY_PREFIX}connection timeout (older Envoy: connection failure); flag UF; 503 after connect_timeout (5 s)"
            ),
            "upstream timed out (110: Connection timed out) while connecting to upstream; 504 after proxy_connect_timeout (60 s)",
            "sC (503/504)",
        ),
        Class::TlsToPlaintextPort => msgs(
            &format!(
                "{ENVOY_PREFIX}remote connection failure, transport failure reason: TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER; flag UF; 503"
            ),
            "SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream; 502",
            "SC (SSL handshake failure)",
        ),
        Class::PlaintextToTlsPort => msgs(
            &format!(
                "{ENVOY_PREFIX}protocol error (flag UPE, 502) or connection termination (flag UC, 503) when the server just closes"
            ),
            "upstream sent no valid HTTP/1.0 header while reading response header from upstream (status 009), or upstream prematurely closed connection while reading response header from upstream; 502",
            "PH or SH (502)",
        ),
        Class::AlpnMismatch => msgs(
            &format!(
                "{ENVOY_PREFIX}remote connection failure, transport failure reason: TLS_error:...:TLSV1_ALERT_NO_APPLICATION_PROTOCOL; flag UF; 503"
            ),
            "SSL_do_handshake() failed (SSL: error:0A000460:SSL routines::tlsv1 alert no application protocol:SSL alert number 120) while SSL handshaking to upstream; 502",
            "SC (SSL handshake failure)",
        ),
        Class::TlsAlert => msgs(
            &format!(
                "{ENVOY_PREFIX}remote connection failure, transport failure reason: TLS_error:...{}; flag UF; 503",
                if d.is_empty() {
                    String::new()
                } else {
                    format!(" ({d})")
                }
            ),
            &format!(
                "SSL_do_handshake() failed (SSL: ... alert{}) while SSL handshaking to upstream, or upstream SSL certificate verify error when nginx rejects the certificate; 502",
                if d.is_empty() {
                    String::new()
                } else {
                    format!(" {d}")
                }
            ),
            "SC (SSL handshake failure)",
        ),
        Class::TlsHandshakeAborted => msgs(
            &format!("{ENVOY_PREFIX}remote connection failure; flag UF; 503"),
            "peer closed connection in SSL handshake (104: Connection reset by peer) while SSL handshaking to upstream; 502",
            "SC (Connection closed during SSL handshake)",
        ),
        Class::H2PrefaceToHttp1 => msgs(
            &format!(
                "{ENVOY_PREFIX}protocol error (flag UPE, 502) or connection termination (flag UC, 503)"
            ),
            "(nginx as the HTTP/1 server answers 400 Bad Request)",
            "PH or SH (502)",
        ),
        Class::Http1ToH2Only => msgs(
            &format!(
                "{ENVOY_PREFIX}protocol error, http/1.1 protocol error: HPE_INVALID_CONSTANT; flag UPE; 502"
            ),
            "upstream sent no valid HTTP/1.0 header while reading response header from upstream (status 009)",
            "PH (502)",
        ),
        Class::ClosedBeforeResponse => msgs(
            &format!("{ENVOY_PREFIX}connection termination; flag UC; 503"),
            "upstream prematurely closed connection while reading response header from upstream; 502",
            "SH (502)",
        ),
        Class::ResetBeforeResponse => msgs(
            &format!("{ENVOY_PREFIX}connection termination; flag UC; 503"),
            "recv() failed (104: Connection reset by peer) while reading response header from upstream (or writev() failed (32: Broken pipe) while sending request to upstream); 502",
            "SH (502)",
        ),
        Class::KeepaliveRace => msgs(
            &format!(
                "{ENVOY_PREFIX}connection termination; flag UC; 503 (Istio's default retry policy does not retry it)"
            ),
            "upstream prematurely closed connection while reading response header from upstream, or recv() failed (104: Connection reset by peer); nginx retries idempotent requests silently, POST/PATCH get 502",
            "SH (502), or a silent close of the client connection when the backend connection was reused",
        ),
        Class::PartialResponseHeaders => msgs(
            &format!(
                "{ENVOY_PREFIX}connection termination (flag UC, 503), or protocol error (UPE, 502)"
            ),
            "upstream prematurely closed connection while reading response header from upstream, or upstream sent invalid header; 502",
            "SH (502)",
        ),
        Class::InvalidResponse => msgs(
            &format!("{ENVOY_PREFIX}protocol error; flag UPE; 502"),
            "upstream sent invalid header / upstream sent no valid HTTP/1.0 header while reading response header from upstream; 502",
            "PH (502)",
        ),
        Class::ResponseTimeout => msgs(
            "upstream request timeout; flag UT; 504 (route timeout, default 15 s)",
            "upstream timed out (110: Connection timed out) while reading response header from upstream; 504 (proxy_read_timeout, default 60 s)",
            "sH (504)",
        ),
        Class::TruncatedResponseBody => msgs(
            "no local reply (headers already sent): the downstream stream is reset; details upstream_reset_after_response_started{connection_termination}",
            "upstream prematurely closed connection while reading upstream (the client gets a truncated body; the logged status is the upstream's)",
            "SD",
        ),
        Class::H2StreamReset => {
            let reason = match d {
                "REFUSED_STREAM" => "remote refused stream reset",
                "NO_ERROR" => "remote reset (no error)",
                "CONNECT_ERROR" => "remote error with CONNECT request",
                _ => "remote reset",
            };
            msgs(
                &format!("{ENVOY_PREFIX}{reason}; flag UR; 503"),
                &format!(
                    "upstream rejected request with error {d} while reading response header from upstream (grpc_pass); 502"
                ),
                "SH (502)",
            )
        }
        Class::H2Goaway => msgs(
            &format!(
                "{ENVOY_PREFIX}remote refused stream reset (streams above the last stream id) or connection termination; flag UR/UC; 503"
            ),
            &format!("upstream sent goaway with error {d} (grpc_pass); 502"),
            "SH (502)",
        ),
        Class::ClientAbort => msgs(
            "flag DC (downstream connection termination); no upstream reset",
            "client prematurely closed connection; 499",
            "CH / CD",
        ),
    };
    Some(m)
}
