//! Which stick the daemon or `listen` reads: a serial device by path, or the built-in simulated
//! stick. Written `port = "sim"` in `[serial]` and `--port sim` on the command line; everything
//! else is a device path.
//!
//! `sim` is read the same in every build; a build without the simulator (`--no-default-features`,
//! see the `sim` feature in Cargo.toml) refuses it where it would be used ([`PortChoice::unavailable`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stick to read: a device path or the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortChoice {
    /// A serial device (`/dev/enocean`, `/dev/ttyUSB0`, a pty).
    Device(PathBuf),
    /// The built-in simulated USB 300 behind a pty (`sim`), started by whoever reads it.
    Simulated,
}

impl PortChoice {
    /// The name that chooses the simulator.
    pub const SIMULATED: &'static str = "sim";

    /// True when this build has the simulated stick (the default-on `sim` feature).
    pub const SIMULATOR_BUILT_IN: bool = cfg!(feature = "sim");

    /// Why this build cannot read this choice ([`NoSimulator`] for `sim` in a build without the
    /// simulator); None when it can.
    pub fn unavailable(&self) -> Option<NoSimulator> {
        self.unavailable_in(Self::SIMULATOR_BUILT_IN)
    }

    /// [`PortChoice::unavailable`] in a build that has the simulator or not.
    fn unavailable_in(&self, simulator_built_in: bool) -> Option<NoSimulator> {
        match self {
            PortChoice::Simulated if !simulator_built_in => Some(NoSimulator),
            _ => None,
        }
    }

    /// `sim` is the simulator; anything else is a device path.
    pub fn parse(text: &str) -> Self {
        if text == Self::SIMULATED {
            PortChoice::Simulated
        } else {
            PortChoice::Device(PathBuf::from(text))
        }
    }
}

/// `sim` chosen in a build without the simulated stick (built with `--no-default-features`, as a
/// gateway build is). The configuration check, the agent's start and `listen` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this build has no simulator (built without the `sim` feature): give the stick's device path, \
     e.g. \"/dev/enocean\", or use a build with the default features"
)]
pub struct NoSimulator;

impl Default for PortChoice {
    /// `/dev/enocean` (the udev rule's link).
    fn default() -> Self {
        PortChoice::Device(PathBuf::from("/dev/enocean"))
    }
}

impl std::str::FromStr for PortChoice {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

/// As written in the configuration: `sim` or the path.
impl fmt::Display for PortChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortChoice::Device(p) => f.pad(&p.display().to_string()),
            PortChoice::Simulated => f.pad(Self::SIMULATED),
        }
    }
}

impl Serialize for PortChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PortChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_is_the_simulator_and_anything_else_a_path() {
        assert_eq!(PortChoice::parse("sim"), PortChoice::Simulated);
        assert_eq!(
            PortChoice::parse("/dev/ttyUSB0"),
            PortChoice::Device("/dev/ttyUSB0".into())
        );
        assert_eq!(
            PortChoice::parse("./sim"),
            PortChoice::Device("./sim".into())
        );
        for text in ["sim", "/dev/enocean", "relative/pty"] {
            assert_eq!(PortChoice::parse(text).to_string(), text);
        }
        assert_eq!(PortChoice::default().to_string(), "/dev/enocean");
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            port: PortChoice,
        }
        let s: S = toml::from_str("port = \"sim\"").unwrap();
        assert_eq!(s.port, PortChoice::Simulated);
        assert_eq!(toml::to_string(&s).unwrap().trim(), "port = \"sim\"");
        let s: S = toml::from_str("port = \"/dev/ttyACM0\"").unwrap();
        assert_eq!(s.port, PortChoice::Device("/dev/ttyACM0".into()));
        assert!(toml::from_str::<S>("port = 3").is_err());
    }

    #[test]
    fn sim_is_refused_only_by_a_build_without_the_simulator() {
        let device = PortChoice::Device("/dev/ttyUSB0".into());
        assert_eq!(device.unavailable_in(false), None);
        assert_eq!(device.unavailable_in(true), None);
        assert_eq!(PortChoice::Simulated.unavailable_in(true), None);
        let refused = PortChoice::Simulated.unavailable_in(false).unwrap();
        let text = refused.to_string();
        assert!(
            text.contains("no simulator") && text.contains("built without the `sim` feature"),
            "{text}"
        );
        assert_eq!(
            PortChoice::Simulated.unavailable().is_none(),
            PortChoice::SIMULATOR_BUILT_IN
        );
        assert_eq!(device.unavailable(), None);
    }
}
