//! ICMPv6 errors the data path makes: for our own TUN device, and out-of-band
//! reports to the source of a transit packet we cannot carry.
//! Builders only: the caller finds the keys and sends the result.

use std::net::Ipv6Addr;

use bytes::BytesMut;
use mycelium_proto::crypto::{SharedSecret, OVERHEAD};
use mycelium_proto::forward::IcmpError;
use mycelium_proto::icmp;
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::packet::{self, TYPE_DATA};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::view::{DataFrame, OobReport};
use rand::RngCore;

use crate::buffer::{HEADROOM, PAYLOAD_AT};

/// An ICMPv6 error about `offending`, at [`HEADROOM`] in a buffer, for our TUN.
pub(crate) fn for_tun(e: IcmpError, offending: &[u8]) -> BytesMut {
    let mut packet = BytesMut::with_capacity(HEADROOM + 48 + offending.len().min(icmp::MAX_QUOTE));
    packet.resize(HEADROOM, 0);
    icmp::encode_error(
        e.src,
        e.dst,
        e.hop_limit,
        e.kind,
        e.code,
        offending,
        &mut packet,
    );
    packet
}

/// A sealed out-of-band report, from `reporter` to the source of `orig`, saying
/// `kind`/`code` about it. We cannot read a transit packet's payload, so the report
/// quotes it, sealed as it is, for the source to open; one too long to quote is
/// reported without it. `secret` is the one we share with the source.
pub(crate) fn report<T: AsRef<[u8]>>(
    secret: &SharedSecret,
    reporter: Ipv6Addr,
    orig: &DataFrame<T>,
    kind: u8,
    code: u8,
) -> Option<BytesMut> {
    let quoted = orig.payload();
    let quoted = if quoted.len() <= icmp::MAX_QUOTE {
        quoted
    } else {
        &[][..]
    };
    let mut buf = BytesMut::with_capacity(PAYLOAD_AT + 4 + 16 + 48 + quoted.len() + OVERHEAD);
    buf.resize(PAYLOAD_AT, 0);
    buf.extend_from_slice(&payload::header(PayloadType::OobIcmp));
    buf.extend_from_slice(&orig.dst().octets());
    icmp::encode_error(reporter, orig.src(), 64, kind, code, quoted, &mut buf);
    buf.resize(buf.len() + OVERHEAD, 0);
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    secret.seal_in_place(nonce, &mut buf[PAYLOAD_AT..]).ok()?;
    let payload_len = (buf.len() - PAYLOAD_AT) as u16;
    let mut head = &mut buf[..PAYLOAD_AT];
    packet::encode_header(TYPE_DATA, &mut head);
    // Sent from 64, and like every packet we originate it leaves with one hop taken.
    DataHeader {
        hop_limit: 63,
        src: reporter,
        dst: orig.src(),
    }
    .encode(payload_len, &mut head);
    Some(buf)
}

/// Turns an out-of-band report about a packet we sent into an ICMPv6 packet for our
/// TUN: the report quotes our own sealed payload, which `secret` (the one we share
/// with the report's [`OobReport::original_dst`]) opens. `None` for a report that
/// does not open.
pub(crate) fn report_for_tun(
    secret: &SharedSecret,
    report: &OobReport<&[u8]>,
    reporter: Ipv6Addr,
    outer_dst: Ipv6Addr,
    hop: u8,
) -> Option<BytesMut> {
    let (kind, code) = report.kind();
    let mut quoted = BytesMut::from(report.quoted());
    let n = secret.open_in_place(&mut quoted).ok()?;
    let original_ip = quoted.get(payload::HEADER_LEN..n)?;
    let mut out = BytesMut::with_capacity(HEADROOM + 48 + original_ip.len());
    out.resize(HEADROOM, 0);
    icmp::encode_error(reporter, outer_dst, hop, kind, code, original_ip, &mut out);
    Some(out)
}
