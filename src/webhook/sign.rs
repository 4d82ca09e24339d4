//! Authentication and signature headers for one attempt. Header values built here carry secrets:
//! they go to the HTTP request and nowhere else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::config::{AuthConfig, DigestEncoding, SigningConfig, WebhookConfig};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The key bytes of a `whsec_…` Standard Webhooks secret, None when it is not one.
pub fn whsec_key(secret: &Secret) -> Option<Vec<u8>> {
    let b64 = secret.expose().strip_prefix("whsec_")?;
    let key = STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

/// A webhook's auth header and signing keys, prepared once for all its attempts: the HMAC keys
/// already absorbed (two of the ~20 SHA-256 blocks of signing a 1 KB body, on a Pi without SHA
/// instructions), the auth header already encoded. Holds secrets: it is never printed.
#[derive(Clone)]
pub struct Signer {
    auth: Option<(String, String)>,
    signing: Signing,
}

#[derive(Clone)]
enum Signing {
    None,
    Hmac {
        mac: HmacSha256,
        header: String,
        prefix: String,
        encoding: DigestEncoding,
    },
    StandardWebhooks {
        macs: Vec<HmacSha256>,
    },
}

/// A keyed HMAC-SHA256, ready for a message.
fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; a key of none is the empty key.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

impl Signer {
    /// The headers `cfg` asks for, prepared.
    pub fn new(cfg: &WebhookConfig) -> Self {
        let auth = match &cfg.auth {
            AuthConfig::None => None,
            AuthConfig::Basic {
                username, password, ..
            } => {
                let pw = password.as_ref().map(Secret::expose).unwrap_or("");
                let token = STANDARD.encode(format!("{username}:{pw}"));
                Some(("Authorization".into(), format!("Basic {token}")))
            }
            AuthConfig::Bearer { token, .. } => {
                let t = token.as_ref().map(Secret::expose).unwrap_or("");
                Some(("Authorization".into(), format!("Bearer {t}")))
            }
            AuthConfig::Header { name, value, .. } => {
                let v = value.as_ref().map(Secret::expose).unwrap_or("");
                Some((name.clone(), v.to_owned()))
            }
        };
        let signing = match &cfg.signing {
            None => Signing::None,
            Some(SigningConfig::Hmac {
                secret,
                header,
                prefix,
                encoding,
                ..
            }) => Signing::Hmac {
                mac: keyed(secret.as_ref().map(Secret::expose).unwrap_or("").as_bytes()),
                header: header.clone(),
                prefix: prefix.clone(),
                encoding: *encoding,
            },
            Some(SigningConfig::StandardWebhooks {
                secret,
                previous_secret,
                ..
            }) => Signing::StandardWebhooks {
                macs: [secret, previous_secret]
                    .into_iter()
                    .flatten()
                    .filter_map(whsec_key)
                    .map(|k| keyed(&k))
                    .collect(),
            },
        };
        Self { auth, signing }
    }

    /// Every header for one attempt of `body`: auth, then signature. `msg_id` is the delivery's
    /// stable id and `now_unix` the attempt's time (Standard Webhooks only).
    pub fn headers(&self, msg_id: &str, body: &[u8], now_unix: i64) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(4);
        h.extend(self.auth.clone());
        match &self.signing {
            Signing::None => {}
            Signing::Hmac {
                mac,
                header,
                prefix,
                encoding,
            } => {
                let mut mac = mac.clone();
                mac.update(body);
                let raw = mac.finalize().into_bytes();
                let digest = match encoding {
                    DigestEncoding::Hex => hex::encode(raw),
                    DigestEncoding::Base64 => STANDARD.encode(raw),
                };
                h.push((header.clone(), format!("{prefix}{digest}")));
            }
            Signing::StandardWebhooks { macs } => {
                let stamp = now_unix.to_string();
                let signature = macs
                    .iter()
                    .map(|mac| {
                        let mut mac = mac.clone();
                        for part in [msg_id.as_bytes(), b".", stamp.as_bytes(), b".", body] {
                            mac.update(part);
                        }
                        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                h.push(("webhook-id".into(), msg_id.to_owned()));
                h.push(("webhook-timestamp".into(), stamp));
                h.push(("webhook-signature".into(), signature));
            }
        }
        h
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex HMAC-SHA256 of `body` with `key`, computed from the key itself (what a receiver
    /// recomputes): the oracle of [`Signer`].
    fn hmac_hex(key: &[u8], body: &[u8]) -> String {
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

    /// The `webhook-signature` value for one attempt: `v1,<base64>` per secret, space separated.
    fn standard_webhooks_signature(
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

    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A prepared signer gives, attempt after attempt, the signature of each body computed from
    /// the key itself (RFC 4231 case 2's key and message among them), in both encodings and for
    /// Standard Webhooks with two secrets.
    #[test]
    fn a_prepared_signer_signs_like_the_key_itself_every_time() {
        let mut cfg = WebhookConfig::new("w", "http://127.0.0.1:9/");
        cfg.auth = AuthConfig::Bearer {
            token: Some(Secret::new("t0k")),
            token_file: None,
        };
        let bodies: [&[u8]; 3] = [b"what do ya want for nothing?", b"", &[0xA5; 1000]];
        for encoding in [DigestEncoding::Hex, DigestEncoding::Base64] {
            cfg.signing = Some(SigningConfig::Hmac {
                secret: Some(Secret::new("Jefe")),
                secret_file: None,
                header: "X-Sig".into(),
                prefix: "sha256=".into(),
                encoding,
            });
            let signer = Signer::new(&cfg);
            for body in bodies {
                let raw = hmac_raw(b"Jefe", body);
                let digest = match encoding {
                    DigestEncoding::Hex => hex::encode(&raw),
                    DigestEncoding::Base64 => STANDARD.encode(&raw),
                };
                assert_eq!(
                    signer.headers("id", body, 7),
                    vec![
                        ("Authorization".to_owned(), "Bearer t0k".to_owned()),
                        ("X-Sig".to_owned(), format!("sha256={digest}")),
                    ]
                );
            }
        }
        assert_eq!(
            Signer::new(&cfg).headers("id", bodies[0], 7)[1].1,
            "sha256=W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        let (now, prev) = (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2Vjb25kIHNlY3JldA==",
        );
        cfg.auth = AuthConfig::None;
        cfg.signing = Some(SigningConfig::StandardWebhooks {
            secret: Some(Secret::new(now)),
            secret_file: None,
            previous_secret: Some(Secret::new(prev)),
            previous_secret_file: None,
        });
        let signer = Signer::new(&cfg);
        let keys: Vec<Vec<u8>> = [now, prev]
            .into_iter()
            .map(|k| whsec_key(&Secret::new(k)).unwrap())
            .collect();
        for (i, body) in bodies.into_iter().enumerate() {
            let h = signer.headers("msg_1", body, 1_700_000_000 + i as i64);
            let stamp = (1_700_000_000 + i as i64).to_string();
            assert_eq!(h[0], ("webhook-id".to_owned(), "msg_1".to_owned()));
            assert_eq!(h[1], ("webhook-timestamp".to_owned(), stamp.clone()));
            let signed = [b"msg_1.", stamp.as_bytes(), b".", body].concat();
            let want: Vec<String> = keys
                .iter()
                .map(|k| format!("v1,{}", STANDARD.encode(hmac_raw(k, &signed))))
                .collect();
            assert_eq!(h[2].1, want.join(" "));
            assert_eq!(
                h[2].1,
                standard_webhooks_signature(&keys, "msg_1", 1_700_000_000 + i as i64, body)
            );
        }
        // Never printed.
        assert_eq!(format!("{signer:?}"), "Signer(..)");
    }

    #[test]
    fn whsec_parsing() {
        assert!(whsec_key(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_some());
        assert!(whsec_key(&Secret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).is_none());
        assert!(whsec_key(&Secret::new("whsec_!!")).is_none());
    }
}
