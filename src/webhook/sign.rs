//! Authentication and signature headers for one attempt. Header values built here carry secrets:
//! they go to the HTTP request and nowhere else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::config::{AuthConfig, DigestEncoding, SigningConfig, WebhookConfig};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `body` with `key` (what a receiver recomputes).
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_raw(key, body))
}

fn hmac_raw(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error branch cannot be taken.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The key bytes of a `whsec_…` Standard Webhooks secret, None when it is not one.
pub fn whsec_key(secret: &Secret) -> Option<Vec<u8>> {
    let b64 = secret.expose().strip_prefix("whsec_")?;
    let key = STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

/// The `webhook-signature` value for one attempt: `v1,<base64>` per secret, space separated.
pub fn standard_webhooks_signature(
    keys: &[Vec<u8>],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut signed = Vec::with_capacity(msg_id.len() + body.len() + 24);
    signed.extend_from_slice(msg_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    keys.iter()
        .map(|k| format!("v1,{}", STANDARD.encode(hmac_raw(k, &signed))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every header for one attempt: auth, then signature. `msg_id` is the delivery's stable id and
/// `now_unix` the attempt's time (Standard Webhooks only).
pub fn headers(
    cfg: &WebhookConfig,
    msg_id: &str,
    body: &[u8],
    now_unix: i64,
) -> Vec<(String, String)> {
    let mut h = Vec::new();
    match &cfg.auth {
        AuthConfig::None => {}
        AuthConfig::Basic {
            username, password, ..
        } => {
            let pw = password.as_ref().map(Secret::expose).unwrap_or("");
            let token = STANDARD.encode(format!("{username}:{pw}"));
            h.push(("Authorization".into(), format!("Basic {token}")));
        }
        AuthConfig::Bearer { token, .. } => {
            let t = token.as_ref().map(Secret::expose).unwrap_or("");
            h.push(("Authorization".into(), format!("Bearer {t}")));
        }
        AuthConfig::Header { name, value, .. } => {
            let v = value.as_ref().map(Secret::expose).unwrap_or("");
            h.push((name.clone(), v.to_owned()));
        }
    }
    match &cfg.signing {
        None => {}
        Some(SigningConfig::Hmac {
            secret,
            header,
            prefix,
            encoding,
            ..
        }) => {
            let key = secret.as_ref().map(Secret::expose).unwrap_or("");
            let raw = hmac_raw(key.as_bytes(), body);
            let digest = match encoding {
                DigestEncoding::Hex => hex::encode(raw),
                DigestEncoding::Base64 => STANDARD.encode(raw),
            };
            h.push((header.clone(), format!("{prefix}{digest}")));
        }
        Some(SigningConfig::StandardWebhooks {
            secret,
            previous_secret,
            ..
        }) => {
            let keys: Vec<Vec<u8>> = [secret, previous_secret]
                .into_iter()
                .flatten()
                .filter_map(whsec_key)
                .collect();
            h.push(("webhook-id".into(), msg_id.to_owned()));
            h.push(("webhook-timestamp".into(), now_unix.to_string()));
            h.push((
                "webhook-signature".into(),
                standard_webhooks_signature(&keys, msg_id, now_unix, body),
            ));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn whsec_parsing() {
        assert!(whsec_key(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_some());
        assert!(whsec_key(&Secret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_none());
        assert!(whsec_key(&Secret::new("whsec_!!")).is_none());
    }
}
