//! Link-layer headers that etherparse does not read by itself: Linux cooked capture (SLL and
//! SLL2, what `tcpdump -i any` writes), BSD null/loopback, and the raw-IP link types.

use crate::capture::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;

/// What follows the link-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPayload<'a> {
    /// A whole Ethernet frame (MAC addresses first).
    Ethernet(&'a [u8]),
    /// A payload of the given EtherType.
    EtherType(u16, &'a [u8]),
    /// A frame known not to carry IP (e.g. an SLL frame of 802.2 LLC).
    NonIp(u16),
    /// The frame is shorter than its link header.
    TooShort(&'static str),
    Unsupported,
}

/// Removes the link-layer header of `data` according to `link`.
pub fn strip_link(link: LinkType, data: &[u8]) -> LinkPayload<'_> {
    match link {
        LinkType::ETHERNET => LinkPayload::Ethernet(data),
        LinkType::LINUX_SLL => {
            // 16 bytes: packet type, ARPHRD type, address length, 8 address bytes, protocol.
            let (Some(proto), Some(rest)) = (be16(data, 14), data.get(16..)) else {
                return LinkPayload::TooShort("Linux SLL header");
            };
            ether_type_payload(proto, rest)
        }
        LinkType::LINUX_SLL2 => {
            // 20 bytes, the protocol first.
            let (Some(proto), Some(rest)) = (be16(data, 0), data.get(20..)) else {
                return LinkPayload::TooShort("Linux SLL2 header");
            };
            ether_type_payload(proto, rest)
        }
        LinkType::NULL | LinkType::LOOP => {
            let Some((&bytes, rest)) = data.split_first_chunk::<4>() else {
                return LinkPayload::TooShort("null/loopback header");
            };
            // NULL stores the address family in the writer's byte order, LOOP always in
            // network order: try the order that gives a known family.
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(bytes)
            } else {
                let le = u32::from_le_bytes(bytes);
                if address_family_ether_type(le).is_some() {
                    le
                } else {
                    u32::from_be_bytes(bytes)
                }
            };
            match address_family_ether_type(family) {
                Some(t) => LinkPayload::EtherType(t, rest),
                None => LinkPayload::NonIp(0),
            }
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => match data.first().map(|b| b >> 4) {
            Some(4) => LinkPayload::EtherType(ETHERTYPE_IPV4, data),
            Some(6) => LinkPayload::EtherType(ETHERTYPE_IPV6, data),
            Some(_) => LinkPayload::NonIp(0),
            None => LinkPayload::TooShort("IP header"),
        },
        LinkType::IPV4 => LinkPayload::EtherType(ETHERTYPE_IPV4, data),
        LinkType::IPV6 => LinkPayload::EtherType(ETHERTYPE_IPV6, data),
        _ => LinkPayload::Unsupported,
    }
}

fn ether_type_payload(proto: u16, rest: &[u8]) -> LinkPayload<'_> {
    // Values below 0x0600 in the SLL protocol field are not EtherTypes (802.3 length,
    // 802.2 LLC, CAN...): no IP in them.
    if proto >= 0x0600 {
        LinkPayload::EtherType(proto, rest)
    } else {
        LinkPayload::NonIp(proto)
    }
}

/// BSD address families for IP: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD),
/// 28 (FreeBSD), 30 (macOS) or 10 (Linux).
fn address_family_ether_type(family: u32) -> Option<u16> {
    match family {
        2 => Some(ETHERTYPE_IPV4),
        10 | 24 | 28 | 30 => Some(ETHERTYPE_IPV6),
        _ => None,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_family_in_either_byte_order() {
        let le = [2, 0, 0, 0, 0x45];
        let be = [0, 0, 0, 30, 0x60];
        assert_eq!(
            strip_link(LinkType::NULL, &le),
            LinkPayload::EtherType(ETHERTYPE_IPV4, &le[4..])
        );
        assert_eq!(
            strip_link(LinkType::NULL, &be),
            LinkPayload::EtherType(ETHERTYPE_IPV6, &be[4..])
        );
        assert_eq!(
            strip_link(LinkType::LOOP, &be),
            LinkPayload::EtherType(ETHERTYPE_IPV6, &be[4..])
        );
        assert_eq!(
            strip_link(LinkType::NULL, &[2, 0]),
            LinkPayload::TooShort("null/loopback header")
        );
    }

    #[test]
    fn cooked_headers_too_short_are_reported() {
        assert!(matches!(
            strip_link(LinkType::LINUX_SLL, &[0; 15]),
            LinkPayload::TooShort(_)
        ));
        assert!(matches!(
            strip_link(LinkType::LINUX_SLL2, &[0; 19]),
            LinkPayload::TooShort(_)
        ));
        assert_eq!(
            strip_link(LinkType(147), &[0; 40]),
            LinkPayload::Unsupported
        );
    }
}
