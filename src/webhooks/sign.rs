//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! where the key is the base64-decoded part of a `whsec_…` secret. During a rotation every
//! message carries one signature per secret, space-separated, so receivers holding either
//! secret accept it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A decoded signing secret. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Reads `whsec_<base64>` (24 to 64 bytes once decoded). The error never repeats the
    /// text, which is a secret.
    pub fn parse(text: &str) -> Result<Secret, &'static str> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("does not start with `whsec_`")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "is not `whsec_` followed by base64")?;
        if !(24..=64).contains(&key.len()) {
            return Err("must decode to 24 to 64 bytes");
        }
        Ok(Secret(key))
    }

    /// The `v1,…` signature of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The signing secrets of `spec`, current first, read from their environment variables now
/// (so a rotation needs no restart). The error names the variable, never its value.
pub fn secrets_of(spec: &crate::catalog::WebhookSpec) -> Result<Vec<Secret>, String> {
    let mut out = Vec::new();
    for var in std::iter::once(&spec.secret_env).chain(spec.previous_secret_env.iter()) {
        let text = std::env::var(var)
            .map_err(|_| format!("the signing secret variable {var} is not set"))?;
        out.push(Secret::parse(&text).map_err(|why| format!("the signing secret in {var} {why}"))?);
    }
    Ok(out)
}

/// The `webhook-signature` header: one signature per secret, current first.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vector_signs_as_documented() {
        // The example from the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let a = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [a.sign("msg_1", 1, b"{}"), b.sign("msg_1", 1, b"{}")]
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn bad_secrets_are_refused_without_repeating_them() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!notbase64!!",
            "whsec_c2hvcnQ=",
        ] {
            let err = Secret::parse(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
        assert_eq!(format!("{:?}", Secret(vec![1; 32])), "Secret(***)");
    }
}
