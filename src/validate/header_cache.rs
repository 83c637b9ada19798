//! Headers seen before: every token of one issuer and key carries the same JOSE header,
//! so its decoding, parsing and issuer-independent checks are done once.
//!
//! Only the header of a token whose signature verified is kept, so what an attacker
//! sends never fills the cache, and a header that is not there costs one hash and one
//! load more than before. It holds at most [`SLOTS`] headers of at most
//! [`MAX_SEGMENT`] characters; a new header takes the place of the one in its slot.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use crate::Algorithm;

/// How many headers are kept: issuers rarely sign with more than a couple of keys.
pub(crate) const SLOTS: usize = 8;

/// Longer header segments (say, with an `x5c` chain) are not kept.
pub(crate) const MAX_SEGMENT: usize = 256;

/// What a header decided that does not depend on the issuer: its `alg` is a real
/// algorithm (not `none`, not unknown), and it asks for no extension we do not process.
/// The issuer's own rules (allowed algorithms, `typ`) are applied to every token.
pub(crate) struct CheckedHeader {
    /// The exact base64url segment these came from.
    segment: Box<str>,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Box<str>>,
    pub(crate) typ: Option<Box<str>>,
}

/// A small, lock-free map from header segment to [`CheckedHeader`].
pub(crate) struct HeaderCache {
    slots: [ArcSwapOption<CheckedHeader>; SLOTS],
}

/// A kept header, borrowed without touching its reference count.
pub(crate) type Cached = Guard<Option<Arc<CheckedHeader>>>;

impl HeaderCache {
    pub(crate) fn new() -> HeaderCache {
        HeaderCache { slots: Default::default() }
    }

    /// The checked header for exactly this segment, if kept.
    pub(crate) fn get(&self, segment: &str) -> Option<Cached> {
        if segment.len() > MAX_SEGMENT {
            return None;
        }
        let cached = self.slots[slot(segment)].load();
        match &*cached {
            Some(header) if *header.segment == *segment => Some(cached),
            _ => None,
        }
    }

    /// Keeps the checked header of a token whose signature verified.
    pub(crate) fn insert(&self, segment: &str, alg: Algorithm, kid: Option<&str>, typ: Option<&str>) {
        if segment.len() > MAX_SEGMENT {
            return;
        }
        let header = CheckedHeader { segment: segment.into(), alg, kid: kid.map(Into::into), typ: typ.map(Into::into) };
        self.slots[slot(segment)].store(Some(Arc::new(header)));
    }
}

impl std::fmt::Debug for HeaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCache").finish_non_exhaustive()
    }
}

/// The slot of a segment: a multiply-rotate hash over its 8-byte words. Which headers
/// share a slot does not matter for correctness, only for how often they are parsed.
fn slot(segment: &str) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = segment.as_bytes();
    let mut hash = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(K);
    }
    ((hash ^ (hash >> 32)) as usize) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exact_segments_only() {
        let cache = HeaderCache::new();
        assert!(cache.get("eyJhbGciOiJIUzI1NiJ9").is_none());
        cache.insert("eyJhbGciOiJIUzI1NiJ9", Algorithm::HS256, Some("k1"), None);
        let hit = cache.get("eyJhbGciOiJIUzI1NiJ9").expect("kept");
        let hit = hit.as_deref().expect("a header");
        assert_eq!((hit.alg, hit.kid.as_deref(), hit.typ.as_deref()), (Algorithm::HS256, Some("k1"), None));
        assert!(cache.get("eyJhbGciOiJIUzI1NiJ8").is_none());
        assert!(cache.get("eyJhbGciOiJIUzI1NiJ").is_none());
    }

    #[test]
    fn is_bounded() {
        let cache = HeaderCache::new();
        let long = "e".repeat(MAX_SEGMENT + 1);
        cache.insert(&long, Algorithm::HS256, None, None);
        assert!(cache.get(&long).is_none());
        let segments: Vec<String> = (0..100).map(|i| format!("eyJraWQiOi{i:04}")).collect();
        for segment in &segments {
            cache.insert(segment, Algorithm::RS256, None, None);
        }
        let kept = segments.iter().filter(|s| cache.get(s).is_some()).count();
        assert!((1..=SLOTS).contains(&kept), "{kept}");
    }
}
