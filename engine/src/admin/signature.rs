//! Signatures on the changes a follower forwards to the leader, so that the operator's admin
//! token never leaves the engine it was given to.
//!
//! The leader's address comes from Redis, which every worker and itemsaver of the crawl can
//! write to: a forwarded change may reach a server that is not the leader. So a follower
//! does not pass the operator's `Authorization` header on; it signs the change instead, with a
//! key derived from the admin token (HMAC-SHA256), over the crawl, the method, the path, the
//! idempotency key, a timestamp and the body. The leader checks the signature in constant
//! time with its own token and refuses a change signed for another crawl or more than
//! [`MAX_SKEW`] away from its clock; it signs its answer in turn, over the change's signature,
//! the status and the body, and the follower takes no answer that is not signed so. Whoever
//! captures a signed change learns neither the token nor a way to sign another change; sent
//! again to the leader within the window, it carries its idempotency key and is answered as
//! the first time, not applied twice; and a server posing as the leader cannot answer in its
//! name.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header a signed forwarded change carries: `t=UNIX_SECONDS,mac=HEX`.
pub const HEADER: &str = "x-spinneret-signature";

/// The header the leader's answer to a signed change carries: `mac=HEX`.
pub const ANSWER_HEADER: &str = "x-spinneret-answer-signature";

/// How far a signature's time may be from the leader's clock (the engines' clocks included).
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// What a signature is made over.
pub struct Signed<'a> {
    /// The crawl (its Redis key prefix): a change signed for one crawl is refused by another
    /// whose engines hold the same token.
    pub crawl: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The path and query.
    pub path: &'a str,
    /// The change's idempotency key.
    pub key: &'a str,
    /// The request body.
    pub body: &'a [u8],
}

/// Why a forwarded change's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header, from a follower without an admin token.
    #[error(
        "a change forwarded by another engine came unsigned: that engine has no --admin_token; every engine of a crawl must be given the same --admin_token"
    )]
    Unsigned,
    /// The header is not `t=SECONDS,mac=HEX`.
    #[error("a forwarded change's signature header is malformed")]
    Malformed,
    /// Signed too long ago, or in the future.
    #[error(
        "a forwarded change was signed {0} s away from this engine's clock (at most {max} s): set the engines' clocks", max = MAX_SKEW.as_secs()
    )]
    Stale(u64),
    /// Signed with another key: another admin token, or the change was altered.
    #[error(
        "a forwarded change was signed with another --admin_token: every engine of a crawl must be given the same --admin_token"
    )]
    Mismatch,
}

/// The key forwarded changes are signed with, derived from the admin token so that the token
/// itself is used for nothing but bearer checks.
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// The key derived from `admin_token`.
    pub fn new(admin_token: &str) -> SigningKey {
        let mut mac = hmac(admin_token.as_bytes());
        mac.update(b"spinneret admin forwarding key v1");
        SigningKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, signed: &Signed<'_>, at: u64) -> Hmac<Sha256> {
        let mut mac = hmac(&self.0);
        // Newlines cannot occur in a method, a path, a header value or a number: the fields
        // cannot run into one another. The body comes last.
        for field in [
            signed.crawl,
            signed.method,
            signed.path,
            signed.key,
            &at.to_string(),
        ] {
            mac.update(field.as_bytes());
            mac.update(b"\n");
        }
        mac.update(signed.body);
        mac
    }

    /// The signature header's value for `signed`, made at `now`.
    pub fn sign(&self, signed: &Signed<'_>, now: SystemTime) -> String {
        let at = unix_secs(now);
        let mac = self.mac(signed, at).finalize().into_bytes();
        format!("t={at},mac={}", hex(&mac))
    }

    /// Checks `header` (absent: unsigned) against `signed` at `now`.
    pub fn verify(
        &self,
        header: Option<&str>,
        signed: &Signed<'_>,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Unsigned)?;
        let (at, mac) = parse(header).ok_or(SignatureError::Malformed)?;
        let skew = unix_secs(now).abs_diff(at);
        if skew > MAX_SKEW.as_secs() {
            return Err(SignatureError::Stale(skew));
        }
        // Constant time: `verify_slice` compares without stopping at the first difference.
        self.mac(signed, at)
            .verify_slice(&mac)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl SigningKey {
    fn answer_mac(&self, request_signature: &str, status: u16, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = hmac(&self.0);
        mac.update(b"answer\n");
        mac.update(request_signature.as_bytes());
        mac.update(format!("\n{status}\n").as_bytes());
        mac.update(body);
        mac
    }

    /// The signature header's value for the answer (`status`, `body`) to the change signed
    /// `request_signature`.
    pub fn sign_answer(&self, request_signature: &str, status: u16, body: &[u8]) -> String {
        let mac = self
            .answer_mac(request_signature, status, body)
            .finalize()
            .into_bytes();
        format!("mac={}", hex(&mac))
    }

    /// Whether `header` signs the answer (`status`, `body`) to the change signed
    /// `request_signature`, compared in constant time.
    pub fn verify_answer(
        &self,
        header: Option<&str>,
        request_signature: &str,
        status: u16,
        body: &[u8],
    ) -> bool {
        let Some(mac) = header
            .and_then(|h| h.trim().strip_prefix("mac="))
            .and_then(unhex)
        else {
            return false;
        };
        self.answer_mac(request_signature, status, body)
            .verify_slice(&mac)
            .is_ok()
    }
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `t=SECONDS,mac=HEX` as (seconds, mac bytes).
fn parse(header: &str) -> Option<(u64, Vec<u8>)> {
    let (t, mac) = header.trim().split_once(',')?;
    let at = t.strip_prefix("t=")?.parse().ok()?;
    Some((at, unhex(mac.strip_prefix("mac=")?)?))
}

/// A MAC's 64 hex digits as its bytes.
fn unhex(mac: &str) -> Option<Vec<u8>> {
    if mac.len() != 64 || !mac.is_ascii() {
        return None;
    }
    (0..mac.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&mac[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-s3cret-s3cret";

    fn change(body: &[u8]) -> Signed<'_> {
        Signed {
            crawl: "{spinneret:news}",
            method: "POST",
            path: "/api/tasks",
            key: "add-second",
            body,
        }
    }

    #[test]
    fn a_change_signed_with_the_same_token_is_accepted_and_nothing_else_is() {
        let now = SystemTime::now();
        let key = SigningKey::new(TOKEN);
        let header = key.sign(&change(b"{}"), now);
        assert!(!header.contains(TOKEN), "the token is not in the signature");
        assert_eq!(key.verify(Some(&header), &change(b"{}"), now), Ok(()));
        assert_eq!(
            SigningKey::new("another-token-another").verify(Some(&header), &change(b"{}"), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(Some(&header), &change(b"{\"x\":1}"), now),
            Err(SignatureError::Mismatch),
            "an altered body"
        );
        let other_path = Signed {
            path: "/api/tasks/1/kill",
            ..change(b"{}")
        };
        assert_eq!(
            key.verify(Some(&header), &other_path, now),
            Err(SignatureError::Mismatch)
        );
        let other_key = Signed {
            key: "another",
            ..change(b"{}")
        };
        assert_eq!(
            key.verify(Some(&header), &other_key, now),
            Err(SignatureError::Mismatch)
        );
        let other_crawl = Signed {
            crawl: "{spinneret:other}",
            ..change(b"{}")
        };
        assert_eq!(
            key.verify(Some(&header), &other_crawl, now),
            Err(SignatureError::Mismatch),
            "a change signed for one crawl is refused by another"
        );
        assert_eq!(
            key.verify(None, &change(b"{}"), now),
            Err(SignatureError::Unsigned)
        );
        assert_eq!(
            key.verify(Some("t=1,mac=zz"), &change(b"{}"), now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn only_the_leaders_own_answer_to_a_change_passes() {
        let key = SigningKey::new(TOKEN);
        let request = key.sign(&change(b"{}"), SystemTime::now());
        let answer = key.sign_answer(&request, 201, b"{\"id\":2}");
        assert!(key.verify_answer(Some(&answer), &request, 201, b"{\"id\":2}"));
        assert!(!key.verify_answer(Some(&answer), &request, 200, b"{\"id\":2}"));
        assert!(!key.verify_answer(Some(&answer), &request, 201, b"{\"id\":3}"));
        assert!(!key.verify_answer(None, &request, 201, b"{\"id\":2}"));
        let other = key.sign(&change(b"{ }"), SystemTime::now());
        assert!(
            !key.verify_answer(Some(&answer), &other, 201, b"{\"id\":2}"),
            "an answer to another change"
        );
        assert!(!SigningKey::new("another-token-another").verify_answer(
            Some(&answer),
            &request,
            201,
            b"{\"id\":2}"
        ));
    }

    #[test]
    fn an_old_or_future_signature_is_refused() {
        let now = SystemTime::now();
        let key = SigningKey::new(TOKEN);
        let late = now + MAX_SKEW + Duration::from_secs(2);
        let header = key.sign(&change(b""), now);
        assert!(matches!(
            key.verify(Some(&header), &change(b""), late),
            Err(SignatureError::Stale(_))
        ));
        let header = key.sign(&change(b""), late);
        assert!(matches!(
            key.verify(Some(&header), &change(b""), now),
            Err(SignatureError::Stale(_))
        ));
        let header = key.sign(&change(b""), now + Duration::from_secs(30));
        assert_eq!(key.verify(Some(&header), &change(b""), now), Ok(()));
    }
}
