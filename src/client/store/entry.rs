//! What a shared store holds: keys derived from a [`CacheKey`] without a secret in
//! them, and entries sealed with AES-256-GCM (or, on explicit request, not).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Secret;
use crate::client::CacheKey;

/// The key that encrypts entries in a shared store: 32 bytes for AES-256-GCM.
///
/// Every process that shares tokens must use the same key. Supply one from your secret
/// manager with [`EntryKey::new`], or derive one from the client secret, which every
/// replica of a client already has, with [`EntryKey::derive_from_client_secret`]: then
/// someone who can only read the store cannot decrypt what it holds. `Debug` does not
/// show the key.
///
/// ```
/// use tower_oauth::client::store::EntryKey;
///
/// let derived = EntryKey::derive_from_client_secret(b"the-client-secret");
/// let supplied = EntryKey::new([7; 32]);
/// assert_eq!(format!("{derived:?}"), "EntryKey(***)");
/// # let _ = supplied;
/// ```
#[derive(Clone)]
pub struct EntryKey(Secret);

/// The HKDF salt: fixes the purpose, so the same secret used elsewhere yields
/// unrelated keys (RFC 5869 §3.1).
const HKDF_SALT: &[u8] = b"tower-oauth shared token store";
/// The HKDF info of the entry key, version 1.
const HKDF_INFO: &[u8] = b"entry encryption key v1";

impl EntryKey {
    /// A key of 32 random bytes, from a secret manager for example.
    pub fn new(bytes: [u8; 32]) -> EntryKey {
        EntryKey(Secret::new(bytes.to_vec()))
    }

    /// A key from a slice that must be exactly 32 bytes long; `None` otherwise.
    pub fn from_slice(bytes: &[u8]) -> Option<EntryKey> {
        <[u8; 32]>::try_from(bytes).ok().map(EntryKey::new)
    }

    /// Derives the key from the client secret with HKDF-SHA256 (RFC 5869), so the
    /// replicas of a client agree on it without any more configuration. The key is as
    /// strong as the secret: a secret an attacker could guess gives a key they could
    /// guess, so prefer [`EntryKey::new`] with random bytes for weak secrets.
    pub fn derive_from_client_secret(client_secret: impl AsRef<[u8]>) -> EntryKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(client_secret.as_ref());
        let mut key = [0_u8; 32];
        prk.expand(&[HKDF_INFO], KeyLength)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        EntryKey::new(key)
    }
}

struct KeyLength;

impl hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        32
    }
}

impl fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EntryKey(***)")
    }
}

/// How entries are protected at rest.
#[derive(Clone)]
pub(crate) enum Protection {
    Encrypted(EntryKey),
    Plaintext,
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protection::Encrypted(_) => "Encrypted(AES-256-GCM)",
            Protection::Plaintext => "Plaintext",
        })
    }
}

/// The first byte of a stored value: how the rest is to be read.
const PLAINTEXT_V1: u8 = 0;
const ENCRYPTED_V1: u8 = 1;

impl Protection {
    /// The stored value of `entry` under the store key `key`.
    pub(crate) fn seal(&self, key: &str, entry: &Entry) -> Vec<u8> {
        let plaintext = entry.to_json();
        match self {
            Protection::Plaintext => {
                let mut value = Vec::with_capacity(1 + plaintext.len());
                value.push(PLAINTEXT_V1);
                value.extend_from_slice(&plaintext);
                value
            }
            Protection::Encrypted(secret) => {
                let mut nonce = [0_u8; NONCE_LEN];
                // A random 96-bit nonce per entry; entries are written a few times an
                // hour, far below the 2^32 messages per key the birthday bound allows
                // (NIST SP 800-38D §8.3).
                SystemRandom::new().fill(&mut nonce).expect("the system random generator works");
                let mut sealed = plaintext;
                // The store key is the additional data: an entry copied under another
                // key does not open.
                cipher(secret)
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_bytes()),
                        &mut sealed,
                    )
                    .expect("AES-GCM sealing of a small entry cannot fail");
                let mut value = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
                value.push(ENCRYPTED_V1);
                value.extend_from_slice(&nonce);
                value.extend_from_slice(&sealed);
                value
            }
        }
    }

    /// The entry in a stored value, or `None` when it cannot be read with this
    /// protection: another key, another key's entry, a plaintext entry where
    /// encryption is expected (or the reverse), or damage.
    pub(crate) fn open(&self, key: &str, value: &[u8]) -> Option<Entry> {
        let (&version, rest) = value.split_first()?;
        match (self, version) {
            (Protection::Plaintext, PLAINTEXT_V1) => Entry::from_json(rest),
            (Protection::Encrypted(secret), ENCRYPTED_V1) if rest.len() > NONCE_LEN => {
                let (nonce, sealed) = rest.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut buffer = sealed.to_vec();
                let plaintext = cipher(secret).open_in_place(nonce, Aad::from(key.as_bytes()), &mut buffer).ok()?;
                Entry::from_json(plaintext)
            }
            _ => None,
        }
    }
}

fn cipher(key: &EntryKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.0.expose()).expect("an EntryKey is 32 bytes"))
}

/// One shared token: the access token, when it was obtained and expires (wall-clock
/// milliseconds since the Unix epoch, since processes share no `Instant`), its scope,
/// and the grant's newest refresh token.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) access_token: String,
    pub(crate) obtained_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) scope: Option<String>,
    pub(crate) refresh_token: Option<Secret>,
    /// `token_type: DPoP`.
    pub(crate) dpop: bool,
}

impl Entry {
    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_millis(self.expires_ms.saturating_sub(self.obtained_ms))
    }

    fn to_json(&self) -> Vec<u8> {
        let mut object = json!({
            "access_token": self.access_token,
            "obtained_ms": self.obtained_ms,
            "expires_ms": self.expires_ms,
        });
        if let Some(scope) = &self.scope {
            object["scope"] = scope.as_str().into();
        }
        if self.dpop {
            object["token_type"] = "DPoP".into();
        }
        if let Some(refresh_token) = &self.refresh_token {
            object["refresh_token"] = URL_SAFE_NO_PAD.encode(refresh_token.expose()).into();
        }
        serde_json::to_vec(&object).expect("a JSON object serializes")
    }

    fn from_json(bytes: &[u8]) -> Option<Entry> {
        let Value::Object(mut object) = serde_json::from_slice(bytes).ok()? else { return None };
        let Some(Value::String(access_token)) = object.remove("access_token") else { return None };
        let refresh_token = match object.remove("refresh_token") {
            None => None,
            Some(Value::String(encoded)) => Some(Secret::new(URL_SAFE_NO_PAD.decode(encoded).ok()?)),
            Some(_) => return None,
        };
        let scope = match object.remove("scope") {
            None => None,
            Some(Value::String(scope)) => Some(scope),
            Some(_) => return None,
        };
        let dpop = match object.remove("token_type") {
            None => false,
            Some(Value::String(kind)) if kind == "DPoP" => true,
            Some(_) => return None,
        };
        Some(Entry {
            access_token,
            obtained_ms: object.get("obtained_ms")?.as_u64()?,
            expires_ms: object.get("expires_ms")?.as_u64()?,
            scope,
            refresh_token,
            dpop,
        })
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("access_token", &"***")
            .field("obtained_ms", &self.obtained_ms)
            .field("expires_ms", &self.expires_ms)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store keys of one cache key: the entry and the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreKeys {
    pub(crate) entry: String,
    pub(crate) lease: String,
}

/// Domain separation for the key hash, version 1.
const KEY_DOMAIN: &[u8] = b"tower-oauth shared token key v1\0";

impl StoreKeys {
    /// `{prefix}:token:{hex}` and `{prefix}:lease:{hex}`, where `hex` is the SHA-256
    /// of a length-prefixed encoding of every field of `key` (and of the grant id): no
    /// field can run into the next, and nothing in the key reveals the client, the
    /// scope or the user.
    pub(crate) fn derive(prefix: &str, key: &CacheKey, grant_id: Option<&str>) -> StoreKeys {
        fn field(out: &mut Vec<u8>, value: &[u8]) {
            out.extend_from_slice(&(value.len() as u64).to_be_bytes());
            out.extend_from_slice(value);
        }
        fn optional(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    field(out, value.as_bytes());
                }
            }
        }
        let mut encoded = KEY_DOMAIN.to_vec();
        field(&mut encoded, key.endpoint().as_bytes());
        field(&mut encoded, key.client_id().as_bytes());
        field(&mut encoded, key.grant().as_str().as_bytes());
        optional(&mut encoded, key.scope());
        encoded.extend_from_slice(&(key.resources().len() as u64).to_be_bytes());
        for resource in key.resources() {
            field(&mut encoded, resource.as_bytes());
        }
        optional(&mut encoded, key.audience());
        optional(&mut encoded, grant_id);
        // Only keys bound to DPoP add the field: the keys of every other token stay as
        // they were, so a fleet mid-upgrade still shares its tokens.
        if let Some(jkt) = key.dpop_thumbprint() {
            field(&mut encoded, b"dpop");
            field(&mut encoded, jkt.as_bytes());
        }
        let hash = digest(&SHA256, &encoded);
        let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        StoreKeys { entry: format!("{prefix}:token:{hex}"), lease: format!("{prefix}:lease:{hex}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::GrantKind;

    fn entry() -> Entry {
        Entry {
            access_token: "eyJhbGciOi.payload-part.signature".into(),
            obtained_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_300_000,
            scope: Some("read write".into()),
            refresh_token: Some(Secret::from("refresh-me")),
            dpop: false,
        }
    }

    #[test]
    fn an_encrypted_entry_opens_only_with_its_key_under_its_store_key() {
        let key = Protection::Encrypted(EntryKey::new([1; 32]));
        let sealed = key.seal("p:token:a", &entry());
        assert_eq!(sealed[0], ENCRYPTED_V1);
        let shown = String::from_utf8_lossy(&sealed);
        assert!(!shown.contains("payload-part") && !shown.contains("refresh-me"), "{shown}");
        let opened = key.open("p:token:a", &sealed).unwrap();
        assert_eq!(opened.access_token, "eyJhbGciOi.payload-part.signature");
        assert_eq!(opened.refresh_token.as_ref().map(Secret::expose), Some(&b"refresh-me"[..]));
        assert_eq!(opened.scope.as_deref(), Some("read write"));
        assert_eq!(opened.lifetime(), Duration::from_secs(300));

        assert!(key.open("p:token:b", &sealed).is_none(), "moved to another key");
        assert!(Protection::Encrypted(EntryKey::new([2; 32])).open("p:token:a", &sealed).is_none());
        assert!(Protection::Plaintext.open("p:token:a", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open("p:token:a", &tampered).is_none());
        assert!(key.open("p:token:a", &sealed[..10]).is_none());
        // Two seals of one entry differ: a fresh nonce each time.
        assert_ne!(key.seal("p:token:a", &entry()), sealed);
    }

    #[test]
    fn a_plaintext_entry_is_refused_where_encryption_is_expected() {
        let plain = Protection::Plaintext.seal("k", &entry());
        assert_eq!(plain[0], PLAINTEXT_V1);
        assert!(Protection::Plaintext.open("k", &plain).is_some());
        assert!(Protection::Encrypted(EntryKey::new([1; 32])).open("k", &plain).is_none());
        assert!(Protection::Plaintext.open("k", b"").is_none());
        assert!(Protection::Plaintext.open("k", b"\x00{}").is_none());
    }

    #[test]
    fn the_derived_key_is_stable_and_depends_on_the_secret() {
        let a = EntryKey::derive_from_client_secret("s3cret");
        assert_eq!(a.0, EntryKey::derive_from_client_secret(b"s3cret").0);
        assert_ne!(a.0, EntryKey::derive_from_client_secret("s3cret2").0);
        assert_ne!(a.0.expose(), b"s3cret");
        assert!(EntryKey::from_slice(&[0; 31]).is_none() && EntryKey::from_slice(&[0; 32]).is_some());
        assert_eq!(format!("{:?}", Protection::Encrypted(a)), "Encrypted(AES-256-GCM)");
    }

    #[test]
    fn a_dpop_token_stays_a_dpop_token_through_the_store() {
        let dpop = Entry { dpop: true, ..entry() };
        let json = dpop.to_json();
        assert!(String::from_utf8_lossy(&json).contains(r#""token_type":"DPoP""#));
        assert!(Entry::from_json(&json).unwrap().dpop);
        assert!(!Entry::from_json(&entry().to_json()).unwrap().dpop, "bearer entries are written as before");
        let unknown = String::from_utf8(json).unwrap().replace("DPoP", "MAC");
        assert!(Entry::from_json(unknown.as_bytes()).is_none());
    }

    #[test]
    fn store_keys_hide_the_cache_key_and_separate_every_field() {
        let key = |scope: Option<&str>, audience: Option<&str>| {
            CacheKey::new(
                "https://idp/token",
                "client-id-1",
                GrantKind::ClientCredentials,
                scope,
                ["https://r"],
                audience,
            )
        };
        let keys = StoreKeys::derive("app", &key(Some("read"), None), None);
        assert!(keys.entry.starts_with("app:token:") && keys.lease.starts_with("app:lease:"), "{keys:?}");
        assert_eq!(keys.entry.len(), "app:token:".len() + 64);
        assert_eq!(keys.entry["app:token:".len()..], keys.lease["app:lease:".len()..]);
        for hidden in ["client-id-1", "idp", "read", "https"] {
            assert!(!keys.entry.contains(hidden), "{keys:?}");
        }
        let distinct = [
            StoreKeys::derive("app", &key(Some("read"), None), None),
            StoreKeys::derive("app", &key(None, Some("read")), None),
            StoreKeys::derive("app", &key(None, None), None),
            StoreKeys::derive("app", &key(Some("read"), None), Some("alice")),
            StoreKeys::derive("app", &key(Some("read"), None), Some("bob")),
            // Tokens bound to a DPoP key are kept apart from the bearer ones, per key.
            StoreKeys::derive("app", &key(Some("read"), None).with_dpop(Some("jkt-of-key-a")), None),
            StoreKeys::derive("app", &key(Some("read"), None).with_dpop(Some("jkt-of-key-b")), None),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a.entry[a.entry.len() - 64..], b.entry[b.entry.len() - 64..], "{a:?} {b:?}");
            }
        }
        let other = StoreKeys::derive("other", &key(Some("read"), None), None);
        assert_eq!(other.entry, keys.entry.replacen("app:", "other:", 1));
        let a = CacheKey::new("https://e", "ab", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        let b = CacheKey::new("https://ea", "b", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
        assert_ne!(StoreKeys::derive("p", &a, None), StoreKeys::derive("p", &b, None));
    }
}
