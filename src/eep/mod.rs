//! EEP engine: declarative profiles (`eep-profiles/*.toml`) that turn ERP1 telegram payloads into
//! named values, plus teach-in detection.
//!
//! Typical use:
//! ```
//! use enocean_agent::eep::{self, Library};
//! let lib = Library::builtin().expect("built-in profiles are valid");
//! let profile = lib.get_str("A5-02-05").unwrap();
//! // DB1 = 0x80 (temperature), DB0 = 0x08 (LRN = 1: a data telegram)
//! let d = eep::decode_payload(profile, 0xA5, &[0x00, 0x00, 0x80, 0x08], 0, None).unwrap();
//! let t = d.get("temperature").unwrap();
//! assert_eq!(t.unit, Some("°C"));
//! ```

pub mod bits;
pub mod decode;
pub mod families;
pub mod golden;
pub mod ha;
pub mod keys;
pub mod library;
pub mod model;
pub mod teach_in;

pub use decode::{
    DecodeError, Decoded, Val, Value, decode, decode_direction, decode_payload, decode_payload_into,
};
pub use golden::{VectorFailure, check_vectors};
pub use library::{Family, Library, LoadError, LookupError};
pub use model::{EepId, Profile, ProfileError, Variant, parse_profile};
pub use teach_in::{TeachIn, UteQuery, UteRequest, teach_in, teach_in_payload};
