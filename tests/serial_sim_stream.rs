//! The simulated stick's byte stream against the ESP3 decoder, without a pty: for any seed and
//! any split of the stream into reads, exactly the emitted telegrams come out, and the noise and
//! bad-CRC frames are counted exactly.

use std::time::Instant;

use enocean_agent::erp1::Telegram;
use enocean_agent::esp3::{Decoder, Item};
use enocean_agent::sim::building::{Chunk, Script, ScriptOptions};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoder_recovers_every_simulated_telegram(
        seed in any::<u64>(),
        noise in 0.0f64..0.5,
        bad in 0.0f64..0.5,
        repeat in 0.0f64..0.5,
        cuts in prop::collection::vec(1usize..200, 1..50),
    ) {
        let mut script = Script::new(ScriptOptions {
            seed,
            noise_probability: noise,
            bad_crc_probability: bad,
            repeat_probability: repeat,
            ..ScriptOptions::default()
        });
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let (mut noise_bytes, mut bad_frames, mut bad_bytes) = (0usize, 0u64, 0usize);
        for _ in 0..300 {
            let chunk = script.next_chunk();
            chunk.encode_into(&mut bytes);
            match chunk {
                Chunk::Telegram(e) => expected.push((e.sender, e.rorg, e.payload, e.status)),
                Chunk::Noise(b) => noise_bytes += b.len(),
                Chunk::BadCrc(b) => {
                    bad_frames += 1;
                    bad_bytes += b.len();
                }
            }
        }
        let mut decoder = Decoder::new();
        let now = Instant::now();
        let mut got = Vec::new();
        let mut rest = bytes.as_slice();
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            decoder.feed(&rest[..n], now, |item| {
                if let Item::Frame { frame, .. } = item
                    && let Ok(t) = Telegram::from_frame(&frame)
                {
                    got.push((t.sender, t.rorg, t.payload, t.status));
                }
            });
            rest = &rest[n..];
        }
        prop_assert_eq!(got, expected);
        let c = decoder.counters();
        prop_assert_eq!(c.data_crc_errors, bad_frames);
        prop_assert_eq!(c.header_crc_errors, 0);
        prop_assert_eq!(
            c.discarded_bytes as usize,
            noise_bytes + bad_bytes - bad_frames as usize
        );
        prop_assert!(decoder.pending().is_empty());
    }
}
