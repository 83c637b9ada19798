//! Server nonces (RFC 9449 §8, §9): stateless, so that any replica can check any
//! other's, and rotating, so that a proof made long ago cannot be used.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A nonce is the period it was made in and an HMAC of that period: 8 + 16 bytes.
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 8 + TAG_LEN;

/// Makes and checks nonces: a nonce is good in the period it was made in and in the
/// next one, so it lives between one and two periods.
pub(crate) struct Nonces {
    key: hmac::Key,
    period: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("period_secs", &self.period).finish_non_exhaustive()
    }
}

impl Nonces {
    /// `secret` keys the HMAC: replicas that share it accept each other's nonces.
    pub(crate) fn new(secret: &[u8], period_secs: u64) -> Nonces {
        Nonces { key: hmac::Key::new(hmac::HMAC_SHA256, secret), period: period_secs.max(1) }
    }

    fn epoch(&self, now: i64) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.period
    }

    fn tag(&self, epoch: u64) -> hmac::Tag {
        // The label keeps these tags apart from any other use of a shared secret.
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"tower-oauth dpop nonce\0");
        ctx.update(&epoch.to_be_bytes());
        ctx.sign()
    }

    /// The nonce to hand out at `now` (Unix seconds).
    pub(crate) fn current(&self, now: i64) -> String {
        let epoch = self.epoch(now);
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&epoch.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(epoch).as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was made by a holder of the secret in this period or the last.
    pub(crate) fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let mut raw = [0u8; NONCE_LEN + 3];
        let Ok(NONCE_LEN) = URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) else { return false };
        let epoch = u64::from_be_bytes(raw[..8].try_into().unwrap_or_default());
        let current = self.epoch(now);
        if epoch != current && epoch.checked_add(1) != Some(current) {
            return false;
        }
        constant_time::verify_slices_are_equal(&raw[8..NONCE_LEN], &self.tag(epoch).as_ref()[..TAG_LEN]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_for_its_period_and_the_next() {
        let nonces = Nonces::new(b"secret", 60);
        let nonce = nonces.current(6_000);
        assert_eq!(nonce.len(), 32);
        assert_eq!(nonce, nonces.current(6_059), "the same period gives the same nonce");
        assert!(nonces.is_valid(&nonce, 6_000));
        assert!(nonces.is_valid(&nonce, 6_119));
        assert!(!nonces.is_valid(&nonce, 6_120), "two periods later it has expired");
        assert!(!nonces.is_valid(&nonce, 5_999), "a nonce from the future is not one we made");
        assert_ne!(nonces.current(6_060), nonce, "nonces rotate");
    }

    #[test]
    fn only_nonces_made_with_the_secret_pass() {
        let ours = Nonces::new(b"secret", 60);
        let theirs = Nonces::new(b"another secret", 60);
        assert!(!ours.is_valid(&theirs.current(6_000), 6_000));
        assert!(Nonces::new(b"secret", 60).is_valid(&ours.current(6_000), 6_000), "replicas share a secret");
        let mut forged = ours.current(6_000).into_bytes();
        forged[31] = if forged[31] == b'A' { b'B' } else { b'A' };
        assert!(!ours.is_valid(std::str::from_utf8(&forged).unwrap(), 6_000));
        for junk in ["", "abc", "not base64 at all!", &"A".repeat(40)] {
            assert!(!ours.is_valid(junk, 6_000), "{junk}");
        }
    }
}
