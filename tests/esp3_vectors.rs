//! Every frame of `tests/data/eep_vectors.jsonl`: all the ESP3 and ERP1 facts must match.

mod common;

use std::time::Instant;

use enocean_agent::erp1::Telegram;
use enocean_agent::esp3::{Decoder, Item, PacketType};

#[test]
fn every_vector_frame_has_the_expected_esp3_facts() {
    let vectors = common::jsonl("eep_vectors.jsonl");
    assert!(vectors.len() >= 300, "vector file looks truncated");
    for v in &vectors {
        let id = v["id"].as_str().unwrap();
        let e = &v["esp3"];
        let bytes = common::unhex(v["esp3_hex"].as_str().unwrap());
        let items = Decoder::new().feed_collect(&bytes, Instant::now());
        let [Item::Frame { offset: 0, frame }] = items.as_slice() else {
            panic!("{id}: expected exactly one frame, got {items:?}");
        };
        assert_eq!(frame.packet_type(), PacketType::RadioErp1, "{id}");
        assert_eq!(
            u64::from(frame.packet_type().code()),
            e["packet_type"],
            "{id}"
        );
        assert_eq!(frame.data().len() as u64, e["data_length"], "{id}");
        assert_eq!(frame.optional().len() as u64, e["optional_length"], "{id}");
        assert_eq!(u64::from(frame.header_crc()), e["header_crc8"], "{id}");
        assert_eq!(u64::from(frame.data_crc()), e["data_crc8"], "{id}");
        assert_eq!(hex::encode_upper(frame.data()), e["data_hex"], "{id}");
        assert_eq!(
            hex::encode_upper(frame.optional()),
            e["optional_hex"],
            "{id}"
        );
        assert_eq!(frame.encode(), bytes, "{id}: re-encoding");

        let t = Telegram::from_frame(frame).unwrap();
        assert_eq!(u64::from(t.rorg), e["rorg"], "{id}");
        assert_eq!(format!("{:02X}", t.rorg), v["rorg"], "{id}");
        assert_eq!(hex::encode_upper(&t.payload), e["payload_hex"], "{id}");
        assert_eq!(t.sender_hex(), e["sender"], "{id}");
        assert_eq!(t.sender_hex(), v["sender"], "{id}");
        assert_eq!(u64::from(t.status), e["status"], "{id}");
        assert_eq!(u64::from(t.repeater_count()), e["repeater_count"], "{id}");
        assert_eq!(
            t.sub_telegrams.map(u64::from),
            e["subtel_num"].as_u64(),
            "{id}"
        );
        assert_eq!(
            t.destination.map(|d| format!("{d:08X}")).as_deref(),
            e["destination"].as_str(),
            "{id}"
        );
        assert_eq!(t.dbm_raw.map(u64::from), e["dbm_raw"].as_u64(), "{id}");
        // The vectors' library negates the 0xFF send-case byte into -255; we report no signal.
        let want_dbm = match e["dbm_raw"].as_u64() {
            Some(255) => None,
            _ => e["dbm"].as_i64(),
        };
        assert_eq!(t.dbm().map(i64::from), want_dbm, "{id}");
        assert_eq!(
            t.security_level.map(u64::from),
            e["security_level"].as_u64(),
            "{id}"
        );
    }
}
