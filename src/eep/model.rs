//! The profile model: what one `eep-profiles/*.toml` file says ([`ProfileSpec`], the serde
//! input), and the compiled, validated [`Profile`] decoding uses.
//!
//! The file format is documented in `eep-profiles/README.md`. Deserialisation rejects unknown keys;
//! [`parse_profile`] then checks everything serde cannot (bit ranges, one value kind per field,
//! semantic keys from [`super::keys`], references between fields) and compiles the spec: keys,
//! references and scales are resolved once, so decoding never searches by name nor meets a
//! profile that skipped validation (a [`Profile`] can only be made by [`parse_profile`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;

use super::keys::{self, KeyKind, SemanticKey};

/// An EEP identifier: RORG, FUNC and TYPE, written `A5-02-05`, and optionally a manufacturer
/// variant written after them, `A5-06-01-ELTAKO`: a device that sends the telegrams of an EEP but
/// fills them its own way (documented by its maker, decoded by FHEM and others). A variant is
/// 1 to 16 letters, digits or `_`, kept upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EepId {
    /// Radio telegram type (F6, D5, A5, D2, D0, …).
    pub rorg: u8,
    /// Profile function.
    pub func: u8,
    /// Profile type.
    pub type_: u8,
    /// The manufacturer variant, empty for the EEP itself.
    pub variant: Variant,
}

/// A manufacturer variant name (see [`EepId`]): up to 16 ASCII bytes, zero-padded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant([u8; 16]);

impl Variant {
    /// The name, None for the EEP itself.
    pub fn as_str(&self) -> Option<&str> {
        let n = self.0.iter().position(|b| *b == 0).unwrap_or(16);
        (n > 0).then(|| std::str::from_utf8(&self.0[..n]).unwrap_or(""))
    }

    fn parse(s: &str) -> Option<Self> {
        if s.is_empty()
            || s.len() > 16
            || !s.starts_with(|c: char| c.is_ascii_alphabetic())
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return None;
        }
        let mut out = [0u8; 16];
        out[..s.len()].copy_from_slice(s.to_ascii_uppercase().as_bytes());
        Some(Self(out))
    }
}

impl EepId {
    /// Builds an identifier from its three numbers.
    pub const fn new(rorg: u8, func: u8, type_: u8) -> Self {
        Self {
            rorg,
            func,
            type_,
            variant: Variant([0; 16]),
        }
    }

    /// The EEP itself, without a manufacturer variant.
    pub const fn base(&self) -> Self {
        Self::new(self.rorg, self.func, self.type_)
    }

    /// The TYPE as two hex digits, with the variant after it (`01-ELTAKO`).
    pub fn type_label(&self) -> String {
        match self.variant.as_str() {
            Some(v) => format!("{:02X}-{v}", self.type_),
            None => format!("{:02X}", self.type_),
        }
    }
}

impl fmt::Display for EepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}-{:02X}-{:02X}", self.rorg, self.func, self.type_)?;
        if let Some(v) = self.variant.as_str() {
            write!(f, "-{v}")?;
        }
        Ok(())
    }
}

/// Why a string is not an EEP identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an EEP (expected RR-FF-TT in hex, e.g. A5-02-05, or a variant, e.g. A5-06-01-ELTAKO)"
)]
pub struct BadEepId(pub String);

impl FromStr for EepId {
    type Err = BadEepId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEepId(s.to_string());
        let t = s.trim();
        let mut parts = t.splitn(4, ['-', ':', '.']);
        let mut next = || -> Result<u8, BadEepId> {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            u8::from_str_radix(p, 16).map_err(|_| bad())
        };
        let mut id = EepId::new(next()?, next()?, next()?);
        if let Some(v) = parts.next() {
            id.variant = Variant::parse(v).ok_or_else(bad)?;
        }
        Ok(id)
    }
}

/// One EEP profile as written in its TOML file (not yet validated: see [`parse_profile`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// The EEP, `RR-FF-TT`; must match the file name.
    pub eep: String,
    /// Short human title of the device class.
    pub title: String,
    /// Longer notes (spec references, quirks).
    #[serde(default)]
    pub description: Option<String>,
    /// The telegram layouts; the first case whose selectors match is used.
    #[serde(rename = "case")]
    pub cases: Vec<CaseSpec>,
    /// Golden vectors: payloads and the values they must decode to.
    #[serde(rename = "vector", default)]
    pub vectors: Vec<Vector>,
}

/// One telegram layout of a profile as written, and the conditions that select it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// Name shown by `profiles show` and in errors (e.g. `status`, `cmd 4`).
    #[serde(default)]
    pub name: Option<String>,
    /// Notes on the case.
    #[serde(default)]
    pub description: Option<String>,
    /// Communication direction this case belongs to (1 = from the device, the default).
    #[serde(default)]
    pub direction: Option<u8>,
    /// RPS status bits that must have these values.
    #[serde(default)]
    pub status: Option<StatusCondition>,
    /// Exact payload length in bytes this case requires.
    #[serde(default)]
    pub length: Option<usize>,
    /// Minimum payload length in bytes this case requires.
    #[serde(default)]
    pub min_length: Option<usize>,
    /// Payload bit fields (command or identifier fields) that must hold given values.
    #[serde(default)]
    pub select: Vec<BitCondition>,
    /// The values this layout carries.
    #[serde(rename = "field", default)]
    pub fields: Vec<FieldSpec>,
}

/// Status-byte condition for RPS cases.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCondition {
    /// Required T21 bit (status bit 5), when given.
    #[serde(default)]
    pub t21: Option<bool>,
    /// Required NU bit (status bit 4), when given.
    #[serde(default)]
    pub nu: Option<bool>,
}

/// A payload bit field that must hold one of the given values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitCondition {
    /// Bit offset (0 = MSB of the first payload byte).
    pub offset: usize,
    /// Size in bits (1–64).
    pub size: usize,
    /// The single accepted value.
    #[serde(default)]
    pub value: Option<u64>,
    /// Several accepted values.
    #[serde(default)]
    pub values: Vec<u64>,
}

impl BitCondition {
    /// True when `raw` is an accepted value.
    #[inline]
    pub fn accepts(&self, raw: u64) -> bool {
        self.value == Some(raw) || self.values.contains(&raw)
    }
}

/// One value carried by a case, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The spec's shortcut (`TMP`, `HUM`, …).
    pub shortcut: String,
    /// Semantic key from the documented list (`temperature`, …); names the value in telemetry.
    pub key: String,
    /// What the field means, in our words.
    #[serde(default)]
    pub description: Option<String>,
    /// Bit offset (0 = MSB of the first payload byte).
    pub offset: usize,
    /// Size in bits (1–64).
    pub size: usize,
    /// Further bit ranges the spec splits the value into, appended below the first one (less
    /// significant), in order: A5-13-10 SRA is DB1 followed by DB0.2…0.
    #[serde(default)]
    pub more_bits: Vec<BitRange>,
    /// Read the raw bits as a two's complement number before scaling.
    #[serde(default)]
    pub signed: bool,
    /// Linear scaling from a raw range to a value range (either may be inverted).
    #[serde(default)]
    pub scale: Option<Scale>,
    /// Linear scaling as `value = raw * factor + add` (alternative to `scale`).
    #[serde(default)]
    pub factor: Option<f64>,
    /// Added after `factor`.
    #[serde(default)]
    pub add: Option<f64>,
    /// Extra factor chosen by another field's raw value (A5-12 DIV, A5-09-05 SCM).
    #[serde(default)]
    pub multiplier: Option<Multiplier>,
    /// Named values (single raw values or raw ranges); the value is the label.
    #[serde(rename = "enum", default)]
    pub items: Vec<EnumItem>,
    /// The value is a bool (raw ≠ 0 is true, or raw = 0 when `invert`).
    #[serde(default)]
    pub bool: bool,
    /// With `bool`: raw 0 is true.
    #[serde(default)]
    pub invert: bool,
    /// Raw values that carry no number but a status (error, out of range, …).
    #[serde(rename = "sentinel", default)]
    pub sentinels: Vec<Sentinel>,
    /// The field is only present when other fields of the case have these raw values: one
    /// condition (`when = { field = "DT", is = 0 }`) or several that must all hold
    /// (`when = [{ field = "PM", is = 2 }, { field = "UNIT", is = 5 }]`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub when: Vec<FieldCondition>,
}

/// A bit range of a payload.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitRange {
    /// Bit offset (0 = MSB of the first payload byte).
    pub offset: usize,
    /// Size in bits.
    pub size: usize,
}

impl FieldSpec {
    /// The field's size in bits, including `more_bits`.
    pub fn total_size(&self) -> usize {
        self.size + self.more_bits.iter().map(|b| b.size).sum::<usize>()
    }

    /// One past the last payload bit the field reads.
    pub fn end(&self) -> usize {
        self.more_bits
            .iter()
            .map(|b| b.offset.saturating_add(b.size))
            .fold(self.offset.saturating_add(self.size), usize::max)
    }
}

/// A validated profile, ready for decoding: made only by [`parse_profile`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Profile {
    /// The EEP.
    pub id: EepId,
    /// The EEP as written in the file, `RR-FF-TT`.
    pub eep: String,
    /// Short human title of the device class.
    pub title: String,
    /// Longer notes (spec references, quirks).
    pub description: Option<String>,
    /// The telegram layouts; the first case whose selectors match is used.
    pub cases: Vec<Case>,
    /// Golden vectors: payloads and the values they must decode to.
    pub vectors: Vec<Vector>,
}

/// A validated telegram layout and the conditions that select it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Case {
    /// Name shown by `profiles show` and in errors (e.g. `status`, `cmd 4`).
    pub name: Option<String>,
    /// Notes on the case.
    pub description: Option<String>,
    /// Communication direction this case belongs to, as written (None: 1, from the device).
    pub direction: Option<u8>,
    /// RPS status bits that must have these values.
    pub status: Option<StatusCondition>,
    /// Exact payload length in bytes this case requires.
    pub length: Option<usize>,
    /// Minimum payload length in bytes this case requires.
    pub min_length: Option<usize>,
    /// Payload bit fields that must hold given values.
    pub select: Vec<BitCondition>,
    /// The values this layout carries.
    pub fields: Vec<Field>,
}

/// A validated field: its spec with every reference resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Field {
    /// The field as written (shortcut, bits, scale, enum, sentinels, …).
    pub spec: FieldSpec,
    /// The semantic key's registry entry.
    pub key: &'static SemanticKey,
    /// How the raw bits become a value.
    pub kind: FieldKind,
    /// `when` conditions with the bits of the fields they name, in the same order.
    pub conditions: Vec<((usize, usize), FieldCondition)>,
    /// The `multiplier`, resolved.
    pub multiplier: Option<ResolvedMultiplier>,
    /// The shortcut once more, shared with every reading decoded from this field: a reading
    /// holds it without a copy of its own.
    pub shared_shortcut: Arc<str>,
}

impl Field {
    /// The spec's shortcut (`TMP`, …).
    pub fn shortcut(&self) -> &str {
        &self.spec.shortcut
    }

    /// The linear map, for scaled fields.
    pub fn linear(&self) -> Option<Linear> {
        match self.kind {
            FieldKind::Linear(l) => Some(l),
            _ => None,
        }
    }
}

/// How a field's raw bits become its value.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    /// A flag: raw ≠ 0 is true (raw = 0 with `invert`).
    Bool {
        /// Raw 0 is true.
        invert: bool,
    },
    /// A label from the field's enum items.
    Label,
    /// A linearly scaled number.
    Linear(Linear),
    /// The raw integer (two's complement when `signed`).
    Raw,
}

/// A `multiplier` with the selecting field's bits and the decimals of each factor.
#[derive(Debug, Clone)]
pub struct ResolvedMultiplier {
    /// Bits of the selecting field.
    pub bits: (usize, usize),
    /// Factor for raw 0, 1, 2, ….
    pub values: Vec<f64>,
    /// `10^decimals` for each factor (the step is the linear slope, or 1, times it), None
    /// when that factor's values need no rounding.
    pub round_pow: Vec<Option<f64>>,
    /// Decimal places for each factor.
    pub decimals: Vec<Option<u8>>,
}

/// A resolved linear map.
#[derive(Debug, Clone, Copy)]
pub struct Linear {
    /// Value per raw step.
    pub slope: f64,
    /// Value at raw 0.
    pub intercept: f64,
    /// Smallest accepted raw value (after sign extension), None when unbounded.
    pub raw_min: Option<f64>,
    /// Largest accepted raw value, None when unbounded.
    pub raw_max: Option<f64>,
    /// Decimal places values are rounded to (see [`decimals_for`]).
    pub decimals: Option<u8>,
    /// `10^decimals` when values need rounding; None when every value of the map is already
    /// exact (integer steps from an integer origin) or there are no decimals.
    pub round_pow: Option<f64>,
}

impl Linear {
    fn new(slope: f64, intercept: f64, raw_min: Option<f64>, raw_max: Option<f64>) -> Self {
        let decimals = decimals_for(slope, intercept);
        let exact = decimals == Some(0) && slope.fract() == 0.0 && intercept.fract() == 0.0;
        Self {
            slope,
            intercept,
            raw_min,
            raw_max,
            decimals,
            round_pow: decimals
                .filter(|_| !exact)
                .map(|d| 10f64.powi(i32::from(d))),
        }
    }
}

/// The most decimal places a value is rounded to.
pub const MAX_DECIMALS: u8 = 12;

/// Decimal places that show values `origin + k × step` without floating-point noise while keeping
/// two neighbouring raw steps apart.
///
/// When the step and the origin are round decimals (0.4 % steps from 0: one place; 0.16 °C
/// steps: two places) that is the fewest places that write every value exactly, so 40.4 is
/// delivered, not 40.400000000000006. Otherwise (0…40 °C over 255 steps: 0.157 °C) it is one
/// place more than the step's first significant digit needs (two places: 21.18), so no two raw
/// values round to the same number and the rounding error stays below a tenth of a step.
/// None when the step is zero or not finite (no rounding).
pub fn decimals_for(step: f64, origin: f64) -> Option<u8> {
    let step = step.abs();
    if !step.is_finite() || step == 0.0 || !origin.is_finite() {
        return None;
    }
    // Within the noise of one multiplication, not a relative tolerance: 156862745.098 (a step
    // of 40/255 times 1e9) is not on the grid.
    let on_grid = |x: f64| (x - x.round()).abs() <= 1e-9_f64.max(x.abs() * 4.0 * f64::EPSILON);
    for d in 0..=MAX_DECIMALS {
        let p = 10f64.powi(i32::from(d));
        if on_grid(step * p) && on_grid(origin * p) {
            return Some(d);
        }
    }
    // ⌈−log10 step⌉ + 1 within 0..=MAX_DECIMALS: n is the smallest power with step × 10^n ≥ 1.
    // Counted without libm's `log10`, the only libm function the agent used: not linking libm
    // keeps half a megabyte of its pages out of the daemon's resident memory.
    let mut n = -1i32;
    while n < i32::from(MAX_DECIMALS) - 1 && step * 10f64.powi(n) < 1.0 {
        n += 1;
    }
    Some((n + 1) as u8)
}

/// Rounds `x` to `decimals` places (half away from zero). Numbers too large for the scaled
/// value to hold the places exactly are returned unchanged.
#[inline]
pub fn round_to(x: f64, decimals: u8) -> f64 {
    const POW10: [f64; MAX_DECIMALS as usize + 1] = [
        1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
    ];
    round_pow(x, POW10[usize::from(decimals.min(MAX_DECIMALS))])
}

/// Rounds `x` to the grid `1/pow` (`pow` = 10^decimals): the nearest double to the decimal, so
/// it prints as written (40.4, not 40.400000000000006).
#[inline]
pub fn round_pow(x: f64, pow: f64) -> f64 {
    let scaled = x * pow;
    if !scaled.is_finite() || scaled.abs() >= 4.5e15 {
        return x;
    }
    // Half away from zero through an integer conversion: `f64::round` is a libm call on the
    // baseline x86-64 and ARM targets and cost a sixth of the decoding time. Exact here, as
    // |scaled| < 2^53.
    let k = if scaled >= 0.0 {
        (scaled + 0.5) as i64
    } else {
        (scaled - 0.5) as i64
    };
    k as f64 / pow
}

/// Linear scaling: raw `raw[0]` maps to `value[0]`, raw `raw[1]` to `value[1]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Raw range ends (may be inverted, e.g. `[255, 0]`); raw values outside are `out_of_range`.
    pub raw: [f64; 2],
    /// Value range ends in the semantic key's canonical unit.
    pub value: [f64; 2],
}

/// A factor chosen by another field's raw value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multiplier {
    /// Shortcut of the selecting field in the same case.
    pub field: String,
    /// Factor for raw 0, 1, 2, …; a raw value past the end gives status `invalid`.
    pub values: Vec<f64>,
}

/// True when `raw` is the single value `one`, or lies in `min..=max` (enum items and sentinels
/// are written the same way).
#[inline]
fn raw_matches(raw: u64, one: Option<u64>, min: Option<u64>, max: Option<u64>) -> bool {
    match (one, min, max) {
        (Some(r), _, _) => r == raw,
        (None, Some(lo), Some(hi)) => (lo..=hi).contains(&raw),
        _ => false,
    }
}

/// A named raw value or raw range.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnumItem {
    /// A single raw value.
    #[serde(default)]
    pub raw: Option<u64>,
    /// Range start (inclusive), with `max`.
    #[serde(default)]
    pub min: Option<u64>,
    /// Range end (inclusive), with `min`.
    #[serde(default)]
    pub max: Option<u64>,
    /// Our label for the value (lower case, short).
    pub label: String,
}

impl EnumItem {
    /// True when `raw` is this item.
    #[inline]
    pub fn matches(&self, raw: u64) -> bool {
        raw_matches(raw, self.raw, self.min, self.max)
    }
}

/// A raw value or range that means "no value" and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sentinel {
    /// A single raw value.
    #[serde(default)]
    pub raw: Option<u64>,
    /// Range start (inclusive), with `max`.
    #[serde(default)]
    pub min: Option<u64>,
    /// Range end (inclusive), with `min`.
    #[serde(default)]
    pub max: Option<u64>,
    /// One of [`SENTINEL_STATUSES`].
    pub status: String,
}

impl Sentinel {
    /// True when `raw` is this sentinel.
    #[inline]
    pub fn matches(&self, raw: u64) -> bool {
        raw_matches(raw, self.raw, self.min, self.max)
    }
}

/// The statuses a sentinel may give (also produced by the decoder itself: `out_of_range` for a raw
/// value outside a scale, `reserved` for an unnamed enum value, `invalid` for a bad multiplier).
/// Commands sent to actuators use `no_change`, `auto`, `default` and `disabled` for the raw values
/// that keep, automate, reset or switch off a setting instead of giving a number.
pub const SENTINEL_STATUSES: &[&str] = &[
    "error",
    "out_of_range",
    "invalid",
    "unknown",
    "not_available",
    "reserved",
    "overflow",
    "underflow",
    "no_change",
    "auto",
    "default",
    "not_supported",
    "disabled",
];

/// One table or an array of tables.
fn one_or_many<'de, D>(d: D) -> Result<Vec<FieldCondition>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(FieldCondition),
        Many(Vec<FieldCondition>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(c) => vec![c],
        OneOrMany::Many(v) => v,
    })
}

/// Presence condition on another field of the same case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    /// Shortcut of the selecting field.
    pub field: String,
    /// The single raw value that makes this field present.
    #[serde(default)]
    pub is: Option<u64>,
    /// Several raw values that make this field present.
    #[serde(rename = "in", default)]
    pub any_of: Vec<u64>,
}

impl FieldCondition {
    /// True when the selecting field's raw value makes this field present.
    #[inline]
    pub fn accepts(&self, raw: u64) -> bool {
        self.is == Some(raw) || self.any_of.contains(&raw)
    }
}

/// A golden vector: a telegram and what it must decode to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// What the vector shows (e.g. "range end: raw 0 is +40 °C").
    #[serde(default)]
    pub note: Option<String>,
    /// Payload bytes as hex (RORG, sender and status excluded).
    pub payload: String,
    /// Status byte (T21/NU for RPS); 0 when absent.
    #[serde(default)]
    pub status: u8,
    /// Direction for two-direction profiles.
    #[serde(default)]
    pub direction: Option<u8>,
    /// Expected values by semantic key: a plain number, label or bool compares the value; a table
    /// may give `value`, `raw` and `status` (a `status` alone means the value is null).
    #[serde(default)]
    pub expect: BTreeMap<String, toml::Value>,
    /// Expect decoding to fail with this error kind instead (`teach_in`, `no_case`, `truncated`).
    #[serde(default)]
    pub error: Option<String>,
}

/// A problem found in a profile file; names the file and, where it applies, the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{message}", .location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct ProfileError {
    /// The file (or built-in name) the profile came from.
    pub file: String,
    /// Where in the profile: `case[1] field TMP`, `vector[0] key temperature`, …
    pub location: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parses and validates one profile file's text. `file` names it in errors.
pub fn parse_profile(text: &str, file: &str) -> Result<Profile, ProfileError> {
    let spec: ProfileSpec = toml::from_str(text).map_err(|e| ProfileError {
        file: file.to_string(),
        location: None,
        message: e.to_string(),
    })?;
    spec.compile(file)
}

impl ProfileSpec {
    /// Checks the profile and resolves keys and field references into a [`Profile`]. `file`
    /// names it in errors.
    pub fn compile(self, file: &str) -> Result<Profile, ProfileError> {
        let err = |location: Option<String>, message: String| ProfileError {
            file: file.to_string(),
            location,
            message,
        };
        let id: EepId = self
            .eep
            .parse()
            .map_err(|e: BadEepId| err(Some("eep".into()), e.to_string()))?;
        let stem = std::path::Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if file.ends_with(".toml") && !stem.eq_ignore_ascii_case(&self.eep) {
            return Err(err(
                Some("eep".into()),
                format!("eep {} does not match the file name {stem}.toml", self.eep),
            ));
        }
        if self.title.trim().is_empty() {
            return Err(err(Some("title".into()), "title is empty".into()));
        }
        if self.cases.is_empty() {
            return Err(err(None, "a profile needs at least one [[case]]".into()));
        }
        let mut cases = Vec::with_capacity(self.cases.len());
        for (ci, case) in self.cases.into_iter().enumerate() {
            let cname = match &case.name {
                Some(n) => format!("case[{ci}] ({n})"),
                None => format!("case[{ci}]"),
            };
            for (si, s) in case.select.iter().enumerate() {
                check_bits(s.offset, s.size)
                    .map_err(|m| err(Some(format!("{cname} select[{si}]")), m))?;
                if s.value.is_none() && s.values.is_empty() {
                    return Err(err(
                        Some(format!("{cname} select[{si}]")),
                        "select needs `value` or `values`".into(),
                    ));
                }
            }
            if let Some(d) = case.direction
                && !(1..=2).contains(&d)
            {
                return Err(err(Some(cname), format!("direction {d} is not 1 or 2")));
            }
            // Fields other fields refer to (`when`, `multiplier`): single bit ranges only.
            let bits: Vec<(String, usize, usize)> = case
                .fields
                .iter()
                .filter(|f| f.more_bits.is_empty())
                .map(|f| (f.shortcut.clone(), f.offset, f.size))
                .collect();
            let find = |name: &str| {
                bits.iter()
                    .find(|(s, _, _)| s == name)
                    .map(|&(_, o, z)| (o, z))
            };
            let mut seen: Vec<(&str, bool)> = Vec::new();
            let mut fields = Vec::with_capacity(case.fields.len());
            for spec in case.fields.iter() {
                let loc = Some(format!("{cname} field {}", spec.shortcut));
                let field = compile_field(spec, &find).map_err(|m| err(loc.clone(), m))?;
                let conditional = !spec.when.is_empty();
                if let Some(&(_, other_cond)) = seen.iter().find(|(k, _)| *k == spec.key)
                    && !(conditional && other_cond)
                {
                    return Err(err(
                        loc,
                        format!(
                            "key {} is used twice in this case (allowed only when both fields have `when`)",
                            spec.key
                        ),
                    ));
                }
                seen.push((field.key.name, conditional));
                fields.push(field);
            }
            cases.push(Case {
                name: case.name,
                description: case.description,
                direction: case.direction,
                status: case.status,
                length: case.length,
                min_length: case.min_length,
                select: case.select,
                fields,
            });
        }
        for (vi, v) in self.vectors.iter().enumerate() {
            let loc = Some(format!("vector[{vi}]"));
            let bytes = hex::decode(v.payload.replace(' ', ""))
                .map_err(|e| err(loc.clone(), format!("payload is not hex: {e}")))?;
            if bytes.is_empty() {
                return Err(err(loc, "payload is empty".into()));
            }
            if v.expect.is_empty() && v.error.is_none() {
                return Err(err(
                    loc,
                    "vector expects nothing (give `expect` or `error`)".into(),
                ));
            }
            for k in v.expect.keys() {
                if keys::lookup(k).is_none() {
                    return Err(err(
                        Some(format!("vector[{vi}] key {k}")),
                        format!("{k} is not a semantic key"),
                    ));
                }
            }
        }
        Ok(Profile {
            id,
            eep: self.eep,
            title: self.title,
            description: self.description,
            cases,
            vectors: self.vectors,
        })
    }
}

impl Profile {
    /// True when some case is for direction 2 (the profile has two directions).
    pub fn has_directions(&self) -> bool {
        self.cases.iter().any(|c| c.direction == Some(2))
    }
}

fn check_bits(offset: usize, size: usize) -> Result<(), String> {
    if size == 0 || size > 64 {
        return Err(format!("size {size} is not between 1 and 64"));
    }
    if offset.saturating_add(size) > 8 * 512 {
        return Err(format!("offset {offset} + size {size} is past any payload"));
    }
    Ok(())
}

fn compile_field(
    field: &FieldSpec,
    find: &dyn Fn(&str) -> Option<(usize, usize)>,
) -> Result<Field, String> {
    check_bits(field.offset, field.size)?;
    for b in &field.more_bits {
        check_bits(b.offset, b.size)?;
    }
    if field.total_size() > 64 {
        return Err(format!(
            "size {} with `more_bits` is over 64 bits",
            field.total_size()
        ));
    }
    if field.shortcut.trim().is_empty() {
        return Err("shortcut is empty".into());
    }
    let key = keys::lookup(&field.key).ok_or_else(|| {
        format!(
            "{} is not a semantic key (see eep-profiles/README.md)",
            field.key
        )
    })?;
    let kinds = [
        field.scale.is_some() || field.factor.is_some(),
        !field.items.is_empty(),
        field.bool,
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err("give only one of scale/factor, enum and bool".into());
    }
    if field.scale.is_some() && (field.factor.is_some() || field.add.is_some()) {
        return Err("give either `scale` or `factor`/`add`, not both".into());
    }
    if field.add.is_some() && field.factor.is_none() {
        return Err("`add` needs `factor`".into());
    }
    if field.invert && !field.bool {
        return Err("`invert` applies only to bool fields".into());
    }
    let kind = if field.bool {
        KeyKind::Bool
    } else if !field.items.is_empty() {
        KeyKind::Label
    } else {
        KeyKind::Number
    };
    if key.kind != KeyKind::Any && key.kind != kind {
        return Err(format!(
            "key {} holds {:?} values but the field gives {:?}",
            key.name, key.kind, kind
        ));
    }
    let max_raw = if field.total_size() == 64 {
        u64::MAX
    } else {
        (1u64 << field.total_size()) - 1
    };
    for item in &field.items {
        match (item.raw, item.min, item.max) {
            (Some(r), None, None) if r <= max_raw => {}
            (None, Some(lo), Some(hi)) if lo <= hi && hi <= max_raw => {}
            _ => {
                return Err(format!(
                    "enum item {:?} needs `raw` or `min` ≤ `max`, within {} bits",
                    item.label,
                    field.total_size()
                ));
            }
        }
        if item.label.trim().is_empty() {
            return Err("enum item with an empty label".into());
        }
    }
    for s in &field.sentinels {
        match (s.raw, s.min, s.max) {
            (Some(r), None, None) if r <= max_raw => {}
            (None, Some(lo), Some(hi)) if lo <= hi && hi <= max_raw => {}
            _ => {
                return Err(format!(
                    "sentinel {:?} needs `raw` or `min` ≤ `max`, within {} bits",
                    s.status,
                    field.total_size()
                ));
            }
        }
        if !SENTINEL_STATUSES.contains(&s.status.as_str()) {
            return Err(format!(
                "sentinel status {:?} is not one of {}",
                s.status,
                SENTINEL_STATUSES.join(", ")
            ));
        }
    }
    let mut linear = None;
    if let Some(sc) = field.scale {
        let [r0, r1] = sc.raw;
        let [v0, v1] = sc.value;
        if !(r0.is_finite() && r1.is_finite() && v0.is_finite() && v1.is_finite()) || r0 == r1 {
            return Err("scale needs finite ends and two different raw ends".into());
        }
        let slope = (v1 - v0) / (r1 - r0);
        linear = Some(Linear::new(
            slope,
            v0 - r0 * slope,
            Some(r0.min(r1)),
            Some(r0.max(r1)),
        ));
    } else if let Some(f) = field.factor {
        let add = field.add.unwrap_or(0.0);
        if !f.is_finite() || !add.is_finite() {
            return Err("factor and add must be finite".into());
        }
        linear = Some(Linear::new(f, add, None, None));
    }
    if field.signed && kind != KeyKind::Number {
        return Err("`signed` applies only to numeric fields".into());
    }
    let mut conditions = Vec::with_capacity(field.when.len());
    for w in &field.when {
        if w.is.is_none() && w.any_of.is_empty() {
            return Err("`when` needs `is` or `in`".into());
        }
        if w.field == field.shortcut {
            return Err("`when` refers to the field itself".into());
        }
        let bits =
            find(&w.field).ok_or_else(|| format!("`when` refers to unknown field {}", w.field))?;
        conditions.push((bits, w.clone()));
    }
    let mut multiplier = None;
    if let Some(m) = &field.multiplier {
        if kind != KeyKind::Number {
            return Err("`multiplier` applies only to numeric fields".into());
        }
        if m.values.is_empty() || m.values.iter().any(|v| !v.is_finite()) {
            return Err("`multiplier.values` must be finite numbers".into());
        }
        let bits = find(&m.field)
            .ok_or_else(|| format!("`multiplier` refers to unknown field {}", m.field))?;
        let (slope, intercept) = linear.map_or((1.0, 0.0), |l| (l.slope, l.intercept));
        let decimals: Vec<Option<u8>> = m
            .values
            .iter()
            .map(|f| decimals_for(slope * f, intercept * f))
            .collect();
        multiplier = Some(ResolvedMultiplier {
            bits,
            values: m.values.clone(),
            round_pow: decimals
                .iter()
                .map(|d| d.map(|d| 10f64.powi(i32::from(d))))
                .collect(),
            decimals,
        });
    }
    let kind = if field.bool {
        FieldKind::Bool {
            invert: field.invert,
        }
    } else if !field.items.is_empty() {
        FieldKind::Label
    } else if let Some(l) = linear {
        FieldKind::Linear(l)
    } else {
        FieldKind::Raw
    };
    Ok(Field {
        shared_shortcut: Arc::from(field.shortcut.as_str()),
        spec: field.clone(),
        key,
        kind,
        conditions,
        multiplier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_step() {
        assert_eq!(decimals_for(0.4, 0.0), Some(1));
        assert_eq!(decimals_for(40.0 / 250.0, 0.0), Some(2));
        assert_eq!(decimals_for(-40.0 / 255.0, 40.0), Some(2));
        assert_eq!(decimals_for(0.1, -40.0), Some(1));
        assert_eq!(decimals_for(1.0, 0.0), Some(0));
        assert_eq!(decimals_for(1000.0, 0.0), Some(0));
        assert_eq!(decimals_for(2.5, 0.0), Some(1));
        assert_eq!(decimals_for(1000.0 / 255.0, 0.0), Some(1));
        assert_eq!(decimals_for(1.0 / 3_600_000.0, 0.0), Some(8));
        assert_eq!(decimals_for(0.0, 0.0), None);
        assert_eq!(decimals_for(f64::NAN, 0.0), None);
        assert_eq!(round_to(0.4 * 101.0, 1), 40.4);
        assert_eq!(round_to(-12.345, 2), -12.35);
        assert_eq!(round_to(1e300, 3), 1e300);
    }

    #[test]
    fn off_grid_decimals_are_one_past_the_steps_first_significant_digit() {
        // The rule as first written with libm's log10, for steps off every decimal grid.
        let by_log = |step: f64| {
            let d = (-step.abs().log10()).ceil() + 1.0;
            d.clamp(0.0, f64::from(MAX_DECIMALS)) as u8
        };
        let mut steps = vec![1e-30, 3e-13, 7e-13, 1e30, 123456.789, 0.099_999_999];
        for range in [
            1.0, 2.55, 10.0, 40.0, 51.0, 80.0, 100.0, 165.0, 1000.0, 1e5, 1e7,
        ] {
            for raw in [3.0, 7.0, 15.0, 63.0, 127.0, 255.0, 1023.0, 4095.0, 65535.0] {
                steps.push(range / raw);
                steps.push(range / raw / 3600.0);
            }
        }
        let mut off_grid = 0;
        for step in steps {
            let on_some_grid = (0..=MAX_DECIMALS).any(|d| {
                let x = step * 10f64.powi(i32::from(d));
                (x - x.round()).abs() <= 1e-9_f64.max(x.abs() * 4.0 * f64::EPSILON)
            });
            if !on_some_grid {
                off_grid += 1;
                assert_eq!(decimals_for(step, 0.0), Some(by_log(step)), "step {step}");
                assert_eq!(decimals_for(-step, 0.0), Some(by_log(step)), "step -{step}");
            }
        }
        assert!(off_grid > 100, "{off_grid} off-grid steps checked");
    }

    #[test]
    fn neighbouring_raw_steps_stay_apart_after_rounding() {
        // Every scale the profiles use has raw ranges like these; check each pair of steps.
        for (r1, v0, v1) in [
            (255.0, 0.0, 40.0),
            (255.0, -40.0, 0.0),
            (250.0, 0.0, 100.0),
            (1023.0, -10.0, 41.2),
            (255.0, 0.0, 1000.0),
            (255.0, 0.0, 2000.0),
            (255.0, 0.0, 5.1),
        ] {
            let slope = (v1 - v0) / r1;
            let d = decimals_for(slope, v0).unwrap();
            let mut last = f64::NEG_INFINITY;
            for raw in 0..=(r1 as u32) {
                let v = round_to(f64::from(raw) * slope + v0, d);
                assert!(
                    v > last,
                    "{v0}..{v1} over {r1}: raw {raw} gives {v} after {last}"
                );
                assert!((v - (f64::from(raw) * slope + v0)).abs() <= slope.abs() / 10.0 + 1e-9);
                last = v;
            }
        }
    }

    #[test]
    fn eep_ids_parse_and_print() {
        let id: EepId = "a5-02-05".parse().unwrap();
        assert_eq!(id, EepId::new(0xA5, 0x02, 0x05));
        assert_eq!(id.to_string(), "A5-02-05");
        assert!("A5-02".parse::<EepId>().is_err());
        assert!("A5-02-05-01".parse::<EepId>().is_err());
        assert!("A5-0G-05".parse::<EepId>().is_err());
        assert!("A5-2-005".parse::<EepId>().is_err());
    }

    #[test]
    fn manufacturer_variants_parse_print_and_sort_after_their_eep() {
        let v: EepId = "a5-06-01-eltako".parse().unwrap();
        assert_eq!(v.to_string(), "A5-06-01-ELTAKO");
        assert_eq!(v.variant.as_str(), Some("ELTAKO"));
        assert_eq!(v.base(), EepId::new(0xA5, 0x06, 0x01));
        assert_eq!(v.type_label(), "01-ELTAKO");
        assert!(v > v.base() && v < EepId::new(0xA5, 0x06, 0x02));
        assert_eq!(
            "F6-3F-7F-Eltako_FSB".parse::<EepId>().unwrap().to_string(),
            "F6-3F-7F-ELTAKO_FSB"
        );
        for bad in [
            "A5-06-01-",
            "A5-06-01-1X",
            "A5-06-01-ELTAKO-X",
            "A5-06-01-ABCDEFGHIJKLMNOPQ",
        ] {
            assert!(bad.parse::<EepId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let e = parse_profile(
            "eep = \"A5-02-05\"\ntitle = \"t\"\ncolour = 1\n[[case]]\n",
            "A5-02-05.toml",
        )
        .unwrap_err();
        assert_eq!(e.file, "A5-02-05.toml");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn bad_field_names_the_field() {
        let text = r#"
eep = "A5-02-05"
title = "t"
[[case]]
[[case.field]]
shortcut = "TMP"
key = "temprature"
offset = 16
size = 8
"#;
        let e = parse_profile(text, "x/A5-02-05.toml").unwrap_err();
        assert_eq!(e.location.as_deref(), Some("case[0] field TMP"));
        assert!(e.to_string().contains("temprature"), "{e}");
    }
}
