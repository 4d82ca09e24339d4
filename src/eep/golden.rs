//! Running a profile's golden vectors: used by the test suite and by `profiles check`.

use super::decode::{Val, Value, decode_payload};
use super::model::{Profile, round_to};

/// One golden vector that did not decode as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorFailure {
    /// Index of the vector in the file.
    pub index: usize,
    /// The semantic key concerned, when the failure is about one value.
    pub key: Option<String>,
    /// What differs.
    pub message: String,
}

impl std::fmt::Display for VectorFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "vector[{}] key {k}: {}", self.index, self.message),
            None => write!(f, "vector[{}]: {}", self.index, self.message),
        }
    }
}

/// True when two numbers agree within 1e-6 relative (1e-9 absolute near zero).
pub fn close(a: f64, b: f64) -> bool {
    let diff = (a - b).abs();
    diff <= 1e-9 || diff <= 1e-6 * a.abs().max(b.abs())
}

/// Runs every golden vector of a profile; an empty result means all passed.
pub fn check_vectors(profile: &Profile) -> Vec<VectorFailure> {
    let mut failures = Vec::new();
    for (index, v) in profile.vectors.iter().enumerate() {
        let fail = |key: Option<&str>, message: String| VectorFailure {
            index,
            key: key.map(str::to_string),
            message,
        };
        let payload = match hex::decode(v.payload.replace(' ', "")) {
            Ok(p) => p,
            Err(e) => {
                failures.push(fail(None, format!("payload is not hex: {e}")));
                continue;
            }
        };
        let result = decode_payload(profile, profile.id.rorg, &payload, v.status, v.direction);
        let decoded = match (result, &v.error) {
            (Err(e), Some(want)) if e.kind() == want => continue,
            (Err(e), _) => {
                failures.push(fail(None, format!("decoding failed: {e}")));
                continue;
            }
            (Ok(_), Some(want)) => {
                failures.push(fail(None, format!("expected error {want}, but it decoded")));
                continue;
            }
            (Ok(d), None) => d,
        };
        for (key, want) in &v.expect {
            let Some(got) = decoded.get(key) else {
                failures.push(fail(Some(key), "no value with this key".into()));
                continue;
            };
            if let Err(m) = compare(got, want) {
                failures.push(fail(Some(key), m));
            }
        }
    }
    failures
}

fn compare(got: &Value<'_>, want: &toml::Value) -> Result<(), String> {
    match want {
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["value", "raw", "status"].contains(&k.as_str()) {
                    return Err(format!(
                        "unknown expectation {k:?} (use value, raw, status)"
                    ));
                }
            }
            if let Some(raw) = t.get("raw") {
                let want_raw = raw.as_integer().ok_or("`raw` must be an integer")?;
                if i128::from(want_raw) != i128::from(got.raw) {
                    return Err(format!("raw {} but expected {want_raw}", got.raw));
                }
            }
            if let Some(status) = t.get("status") {
                let want_status = status.as_str().ok_or("`status` must be a string")?;
                if got.status != Some(want_status) {
                    return Err(format!(
                        "status {:?} but expected {want_status:?}",
                        got.status
                    ));
                }
                if t.get("value").is_none() && got.value != Val::None {
                    return Err(format!("value {:?} but expected none", got.value));
                }
            }
            match t.get("value") {
                Some(v) => compare_value(got, v),
                None => Ok(()),
            }
        }
        other => compare_value(got, other),
    }
}

/// True when a decoded number is the expected one rounded to the field's resolution (the
/// decimals the decoder rounded to), so a vector may give the exact spec value (21.176470588…)
/// or the delivered one (21.18).
fn close_rounded(got: &Value<'_>, want: f64) -> bool {
    let want = match got.decimals {
        Some(d) => round_to(want, d),
        None => want,
    };
    got.value.as_f64().is_some_and(|g| close(g, want))
}

fn compare_value(got: &Value<'_>, want: &toml::Value) -> Result<(), String> {
    let ok = match (want, got.value) {
        (toml::Value::Float(w), _) => close_rounded(got, *w),
        (toml::Value::Integer(w), _) => close_rounded(got, *w as f64),
        (toml::Value::String(w), Val::Label(g)) => g == w,
        (toml::Value::Boolean(w), Val::Bool(g)) => g == *w,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "value {} (raw {}, status {:?}) but expected {want}",
            got.value.to_json(),
            got.raw,
            got.status
        ))
    }
}
