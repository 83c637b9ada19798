use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Algorithm;
use crate::validate::{Binding, TrustedIssuer, Verified};

/// The verified-token cache: an opt-in cache for
/// [`BearerAuthLayer::cache`](super::BearerAuthLayer::cache), so a repeated token skips
/// parsing and the signature check.
///
/// - Bounded by the total size of the cached tokens (default 32 MiB), with S3-FIFO
///   eviction.
/// - A hit still passes the time checks (`exp`, `nbf`, with the validator's leeway), so
///   an entry ends at the token's `exp`.
/// - A hit is refused, and the entry dropped, once the key that verified the token has
///   left its issuer's key set (compared by RFC 7638 thumbprint), or the issuer has
///   left the validator's [trusted set](crate::validate::Issuers).
/// - Introspected tokens are not kept here: the introspection cache bounds how long a
///   revoked token can pass.
/// - Keys are the whole token, compared exactly: no hash collision can confuse two
///   tokens.
///
/// Off by default: it trades memory for CPU, and a revoked key is noticed only at the
/// next key refresh, as without the cache.
///
/// Clones share the same entries, so an application can keep a handle to watch
/// [`len`](Self::len) while the layer uses the cache.
pub struct VerifiedTokenCache<C> {
    entries: Arc<quick_cache::sync::Cache<Box<str>, Arc<Entry<C>>, TokenWeight>>,
}

impl<C> Clone for VerifiedTokenCache<C> {
    fn clone(&self) -> Self {
        VerifiedTokenCache { entries: self.entries.clone() }
    }
}

struct Entry<C> {
    claims: C,
    expires_at: i64,
    not_before: Option<i64>,
    leeway: i64,
    alg: Algorithm,
    kid: Option<Box<str>>,
    thumbprint: [u8; 32],
    issuer: Arc<TrustedIssuer>,
    /// What the token is bound to: a hit must still come with its proof.
    binding: Binding,
}

#[derive(Clone)]
struct TokenWeight;

impl<C> quick_cache::Weighter<Box<str>, Arc<Entry<C>>> for TokenWeight {
    fn weight(&self, token: &Box<str>, _: &Arc<Entry<C>>) -> u64 {
        // The token plus a generous allowance for the entry and the claims.
        token.len() as u64 + 512
    }
}

impl<C> std::fmt::Debug for VerifiedTokenCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokenCache")
            .field("entries", &self.entries.len())
            .field("weight", &self.entries.weight())
            .field("capacity", &self.entries.capacity())
            .finish()
    }
}

impl<C: Clone> Default for VerifiedTokenCache<C> {
    fn default() -> Self {
        VerifiedTokenCache::with_capacity(32 * 1024 * 1024)
    }
}

impl<C: Clone> VerifiedTokenCache<C> {
    /// A cache holding at most `bytes` of tokens (plus a fixed allowance per entry).
    pub fn with_capacity(bytes: u64) -> Self {
        let estimated_items = usize::try_from(bytes / 1536).unwrap_or(usize::MAX).max(16);
        let entries = quick_cache::sync::Cache::with_weighter(estimated_items, bytes, TokenWeight);
        VerifiedTokenCache { entries: Arc::new(entries) }
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn get(&self, token: &str, now: SystemTime, span: &tracing::Span) -> Option<(C, Binding)> {
        let entry = self.entries.get(token)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let timely = now.saturating_sub(entry.leeway) < entry.expires_at
            && entry.not_before.is_none_or(|nbf| nbf <= now.saturating_add(entry.leeway));
        let key_present = !entry.issuer.is_retired()
            && entry.issuer.key_set().is_some_and(|keys| {
                keys.as_deref().is_some_and(|set| {
                    set.candidates(entry.kid.as_deref(), entry.alg).any(|key| *key.thumbprint() == entry.thumbprint)
                })
            });
        if !(timely && key_present) {
            // Expired, its key was rotated out, or its issuer removed: validate afresh,
            // and give the proper error if it now fails.
            self.entries.remove(token);
            return None;
        }
        span.record("kid", entry.kid.as_deref());
        tracing::trace!(parent: span, "verified-token cache hit");
        Some((entry.claims.clone(), entry.binding.clone()))
    }

    pub(crate) fn insert(&self, token: &str, verified: Verified<C>) -> (C, Binding) {
        // Only signed tokens are cached: the cache forgets a token when its signing key
        // leaves the set, which needs a signing key to follow.
        let binding = verified.binding;
        let Some(signer) = verified.signer.filter(|signer| signer.keys().is_some()) else {
            return (verified.claims, binding);
        };
        let claims = verified.claims.clone();
        let entry = Entry {
            claims: verified.claims,
            expires_at: verified.expires_at,
            not_before: verified.not_before,
            leeway: verified.leeway,
            alg: signer.alg,
            kid: signer.key.kid().map(Into::into),
            thumbprint: *signer.key.thumbprint(),
            issuer: signer.issuer,
            binding: binding.clone(),
        };
        self.entries.insert(token.into(), Arc::new(entry));
        (claims, binding)
    }
}
