//! Connection keys: the direction-independent 5-tuple, and its hash.

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::decode::TcpPacket;

/// Seed of the shard hash: fixed, so shards are the same in every run.
const SHARD_SEED: u64 = 0x5EED_F10E;

/// One end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    /// `1.2.3.4:80`, or `[::1]:80` for IPv6, as URLs and most tools write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The two endpoints of a connection in sorted order, so that both directions map to the
/// same key. `lo < hi` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and whether `src` is the key's `lo` side.
    pub fn of(src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        let src_is_lo = match (src.ip, dst.ip) {
            // Every packet passes here: two IPv4 endpoints compare as numbers, in the same
            // order as the derived one (the octets, most significant first, then the port).
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a), src.port) <= (u32::from(b), dst.port),
            _ => src <= dst,
        };
        if src_is_lo {
            (FlowKey { lo: src, hi: dst }, true)
        } else {
            (FlowKey { lo: dst, hi: src }, false)
        }
    }

    /// The key's hash: fixed-seeded, so every run (and both directions) gives the same. The
    /// reader computes it once per packet; it picks the shard and then places the connection
    /// in that shard's table, so a packet is hashed once however many threads there are.
    /// The key of a TCP segment's connection, and whether its sender is the key's `lo` side.
    pub fn of_packet(p: &TcpPacket<'_>) -> (FlowKey, bool) {
        let src = Endpoint {
            ip: p.src,
            port: p.src_port,
        };
        let dst = Endpoint {
            ip: p.dst,
            port: p.dst_port,
        };
        FlowKey::of(src, dst)
    }

    pub fn hash(&self) -> u64 {
        foldhash::fast::FixedState::with_seed(SHARD_SEED).hash_one(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_order_as_the_derived_comparison_does() {
        let ends = [
            ("10.0.0.1", 80),
            ("10.0.0.1", 81),
            ("10.0.0.2", 1),
            ("9.255.255.255", 65535),
            ("192.168.1.1", 443),
            ("::1", 80),
            ("127.0.0.1", 8080),
        ];
        for &(a, ap) in &ends {
            for &(b, bp) in &ends {
                let src = Endpoint {
                    ip: a.parse().unwrap(),
                    port: ap,
                };
                let dst = Endpoint {
                    ip: b.parse().unwrap(),
                    port: bp,
                };
                let (key, src_is_lo) = FlowKey::of(src, dst);
                assert_eq!(src_is_lo, src <= dst, "{src} {dst}");
                assert!(key.lo <= key.hi);
            }
        }
    }
}
