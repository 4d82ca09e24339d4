//! The secure settings of a `[[device]]` entry: `key_file`, `slf`, `rlc`. Kept here so the
//! configuration module only calls [`load_device_key`].

use std::path::Path;

use super::{DeviceKey, Slf};
use crate::config::DeviceConfig;

/// Reads `key_file` (relative to `base`) into `d.key` and checks `slf` and `rlc`. The error
/// is the key concerned and a message naming the file, never its content.
pub fn load_device_key(d: &mut DeviceConfig, base: &Path) -> Result<(), (&'static str, String)> {
    let Some(file) = &d.key_file else {
        if d.slf.is_some() || d.rlc.is_some() {
            return Err((
                if d.slf.is_some() { "slf" } else { "rlc" },
                "only meaningful with `key_file`".into(),
            ));
        }
        return Ok(());
    };
    let path = if file.is_absolute() {
        file.clone()
    } else {
        base.join(file)
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ("key_file", format!("cannot read {}: {e}", path.display())))?;
    let key =
        DeviceKey::from_hex(&text).map_err(|e| ("key_file", format!("{}: {e}", path.display())))?;
    let Some(slf) = d.slf.map(Slf) else {
        return Err((
            "slf",
            "a device with `key_file` needs `slf`, its security level format (e.g. 0x4B for a PTM 215)"
                .into(),
        ));
    };
    if let Some(why) = slf.unsupported() {
        return Err(("slf", format!("{:#04X}: not supported: {why}", slf.0)));
    }
    let bits = 8 * slf.rlc_len() as u32;
    if let Some(rlc) = d.rlc
        && bits < 32
        && rlc >> bits != 0
    {
        return Err((
            "rlc",
            format!("{rlc:#X} does not fit a {bits}-bit rolling code"),
        ));
    }
    if slf.rlc_len() > 0 && !slf.rlc_transmitted() && d.rlc.is_none() {
        return Err((
            "rlc",
            "this SLF's rolling code is not transmitted: give the device's current `rlc`".into(),
        ));
    }
    d.key = Some(key);
    Ok(())
}
