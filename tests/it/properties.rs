//! Property tests: nothing a client controls makes the validator or the
//! bearer layer panic or accept what it should not, and the crate's parsers and
//! normalisers round-trip.
//!
//! Everything runs against real keys and real tokens minted by the test issuer: RS256,
//! PS256, ES256/384/512, EdDSA, an HS256 secret, and JWE tokens for four key-management
//! modes. Each property first checks that the unmutated input passes, so none of them can
//! pass by rejecting everything.
#![cfg(feature = "testing")]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use tower::{Layer as _, ServiceExt as _};
use tower_oauth::bearer::{Rejection, RequireScopeLayer, ResponseStyle};
use tower_oauth::client::{CacheKey, GrantKind, InvalidResponse, TokenEndpoint, TokenError, TokenResponse};
use tower_oauth::testing::{TestIssuer, TestKey};
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, Jwk, KeySet, KeyStore, Secret, ValidationError, Validator};

use crate::support::api::now;

// ---------------------------------------------------------------------------------------
// The fixture: one issuer, its keys, a validator that trusts them, and valid tokens.
// ---------------------------------------------------------------------------------------

/// The signing algorithms of the minted tokens; the validator allows every algorithm, HMAC
/// included, so that confusion between families is tried against the most permissive
/// allow-list.
const SIGNING: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

/// The key-management modes of the JWE tokens (each wraps an RS256 or ES256 JWS).
#[cfg(feature = "jwe")]
const ENCRYPTION: [&str; 4] = ["RSA-OAEP-256", "ECDH-ES+A256KW", "A256KW", "dir"];

/// The scopes every minted token carries.
const GRANTED: [&str; 2] = ["read", "write"];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    issuer: TestIssuer,
    validator: Validator,
    /// A validator for the same issuer whose key source never answers: no key is ever
    /// loaded, so a token that names the issuer gets 503.
    keyless: Validator,
    /// One valid token per algorithm of [`SIGNING`].
    signed: Vec<(Algorithm, String)>,
    /// One valid JWE per mode of [`ENCRYPTION`], with its key.
    #[cfg(feature = "jwe")]
    encrypted: Vec<(tower_oauth::testing::TestEncryptionKey, String)>,
}

impl Fixture {
    fn validate(&self, token: &str) -> Result<Claims, ValidationError> {
        self.runtime.block_on(self.validator.validate(token))
    }

    fn key(&self, alg: Algorithm) -> TestKey {
        self.issuer.current_key(alg)
    }

    /// Every valid token: the signed ones, then the encrypted ones.
    fn all_tokens(&self) -> Vec<String> {
        let tokens = self.signed.iter().map(|(_, t)| t.clone());
        #[cfg(feature = "jwe")]
        let tokens = tokens.chain(self.encrypted.iter().map(|(_, t)| t.clone()));
        tokens.collect()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // Tokens live an hour, so no case runs into their expiry.
        let issuer = runtime.block_on(TestIssuer::builder().token_lifetime(Duration::from_secs(3600)).start()).unwrap();
        let hs = issuer.current_key(Algorithm::HS256);
        let mut keys = KeySet::from_jwks(issuer.jwks().to_string().as_bytes()).unwrap();
        let secret = Secret::new(hs.hmac_secret().unwrap());
        keys.insert(Jwk::hmac(Algorithm::HS256, &secret, Some(hs.kid())).unwrap());

        let builder = Validator::builder()
            .issuer_with_keys(issuer.issuer(), KeyStore::from_key_set(keys))
            .audience(issuer.audience())
            .algorithms(Algorithm::ALL);
        #[cfg(feature = "jwe")]
        let (builder, encryption_keys) = {
            let keys: Vec<_> =
                ENCRYPTION.iter().map(|alg| tower_oauth::testing::TestEncryptionKey::generate(alg)).collect();
            let mut private = Vec::new();
            for key in &keys {
                let set: Value = serde_json::from_str(&key.private_jwks()).unwrap();
                private.extend(set["keys"].as_array().unwrap().iter().cloned());
            }
            let set = json!({ "keys": private }).to_string();
            let decryption = tower_oauth::validate::DecryptionKeys::from_jwks(set.as_bytes()).unwrap();
            (builder.decryption_keys(decryption), keys)
        };
        let validator = builder.build().unwrap();

        let keyless = runtime.block_on(async {
            // Port 1 on loopback refuses connections at once.
            let store = KeyStore::builder()
                .jwks_uri("http://127.0.0.1:1/jwks")
                .timeout(Duration::from_millis(200))
                .build()
                .unwrap();
            Validator::builder().issuer_with_keys(issuer.issuer(), store).audience(issuer.audience()).build().unwrap()
        });

        let scope = GRANTED.join(" ");
        let signed = SIGNING.iter().map(|&alg| (alg, issuer.mint().alg(alg).scope(&scope).sign())).collect();
        #[cfg(feature = "jwe")]
        let encrypted = encryption_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let alg = if i % 2 == 0 { Algorithm::RS256 } else { Algorithm::ES256 };
                let token = issuer.mint().alg(alg).scope(&scope).encrypt(&key);
                (key, token)
            })
            .collect();
        let fixture = Fixture {
            runtime,
            issuer,
            validator,
            keyless,
            signed,
            #[cfg(feature = "jwe")]
            encrypted,
        };
        for token in fixture.all_tokens() {
            fixture.validate(&token).expect("every unmutated token validates");
        }
        fixture
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, max_shrink_iters: 256, ..ProptestConfig::default() }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn every_unmutated_token_validates_with_its_claims() {
    let f = fixture();
    for token in f.all_tokens() {
        let claims = f.validate(&token).unwrap();
        assert_eq!(claims.issuer(), Some(f.issuer.issuer()));
        assert!(claims.scopes().contains_all(GRANTED));
    }
}

// ---------------------------------------------------------------------------------------
// Arbitrary input never validates and never panics.
// ---------------------------------------------------------------------------------------

const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Strings that look like compact tokens: 1 to 7 segments of base64url characters.
fn segments() -> impl Strategy<Value = String> {
    vec("[A-Za-z0-9_-]{0,80}", 1..8).prop_map(|s| s.join("."))
}

/// JWS-shaped junk that gets as far as the signature check: a JSON header with a real or
/// made-up `alg` and `kid`, a payload with the issuer's claims, and random signature bytes.
fn forged_jws() -> impl Strategy<Value = String> {
    let f = fixture();
    let mut kids: Vec<String> = SIGNING.iter().map(|&alg| f.key(alg).kid().to_owned()).collect();
    kids.push("made-up".to_owned());
    let algs = ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS512", "none", "RS1", ""];
    (select(algs.to_vec()), proptest::option::of(select(kids)), vec(any::<u8>(), 0..600), any::<bool>()).prop_map(
        |(alg, kid, signature, typ)| {
            let f = fixture();
            let mut header = json!({ "alg": alg });
            if let Some(kid) = kid {
                header["kid"] = kid.into();
            }
            if typ {
                header["typ"] = "at+jwt".into();
            }
            let claims = json!({
                "iss": f.issuer.issuer(), "aud": f.issuer.audience(), "sub": "mallory",
                "exp": now() + 600, "iat": now(), "scope": "read write admin"});
            format!("{}.{}.{}", b64(header.to_string()), b64(claims.to_string()), b64(signature))
        },
    )
}

/// JWE-shaped junk with segment lengths that pass the pre-checks, so it reaches the
/// private-key operation with a real key (and must fail there, not panic).
#[cfg(feature = "jwe")]
fn forged_jwe() -> impl Strategy<Value = String> {
    let f = fixture();
    let kids: Vec<(String, String)> =
        f.encrypted.iter().map(|(key, _)| (key.kid().to_owned(), key.alg().to_owned())).collect();
    let encs = ["A256GCM", "A128GCM", "A128CBC-HS256", "A256CBC-HS512"];
    // A real ephemeral key (from a real ECDH-ES token) gets through key agreement, so the
    // key unwrap itself is reached.
    let real_epk = f
        .encrypted
        .iter()
        .find_map(|(_, token)| {
            let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?).ok()?;
            header.get("epk").cloned()
        })
        .expect("an ECDH-ES token");
    let epk = prop_oneof![
        Just(None),
        Just(Some(real_epk)),
        Just(Some(json!({"kty": "EC", "crv": "P-256", "x": b64([1u8; 32]), "y": b64([2u8; 32])}))),
        Just(Some(json!({"kty": "EC", "crv": "P-256"}))),
        Just(Some(json!("not a key"))),
    ];
    (select(kids), select(encs.to_vec()), epk, vec(any::<u8>(), 0..300), vec(any::<u8>(), 0..300)).prop_map(
        |((kid, alg), enc, epk, key, ciphertext)| {
            let mut header = json!({ "alg": alg, "enc": enc, "kid": kid, "cty": "JWT" });
            if let Some(epk) = epk {
                header["epk"] = epk;
            }
            let (iv, tag) =
                if enc.contains("GCM") { (12, 16) } else { (16, if enc == "A128CBC-HS256" { 16 } else { 32 }) };
            let key = if alg == "dir" || alg == "ECDH-ES" { String::new() } else { b64(key) };
            format!(
                "{}.{}.{}.{}.{}",
                b64(header.to_string()),
                key,
                b64(vec![7u8; iv]),
                b64(ciphertext),
                b64(vec![9u8; tag])
            )
        },
    )
}

#[cfg(not(feature = "jwe"))]
fn forged_jwe() -> impl Strategy<Value = String> {
    segments()
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn arbitrary_bytes_never_validate(bytes in vec(any::<u8>(), 0..4096)) {
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(fixture().validate(&token).is_err());
    }

    #[test]
    fn arbitrary_strings_never_validate(token in any::<String>()) {
        prop_assert!(fixture().validate(&token).is_err());
    }

    #[test]
    fn token_shaped_junk_never_validates(token in prop_oneof![segments(), forged_jws(), forged_jwe()]) {
        let result = fixture().validate(&token);
        prop_assert!(result.is_err(), "{token} validated");
    }
}

// ---------------------------------------------------------------------------------------
// Mutated real tokens never validate.
// ---------------------------------------------------------------------------------------

/// A change to the text of a token. Positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Replace {
        at: usize,
        with: char,
    },
    Delete {
        at: usize,
    },
    Truncate {
        keep: usize,
    },
    SwapSegments {
        a: usize,
        b: usize,
    },
    DropSegment {
        at: usize,
    },
    DuplicateSegment {
        at: usize,
    },
    /// `=` padding after a segment.
    Pad {
        segment: usize,
        pad: &'static str,
    },
    /// The segment re-encoded in the standard alphabet (`+`, `/`) with padding.
    StandardAlphabet {
        segment: usize,
    },
    Whitespace {
        segment: usize,
        at: usize,
        space: char,
    },
    /// The (protected) header decoded, changed, and encoded again; the rest kept.
    Header(HeaderEdit),
}

#[derive(Debug, Clone)]
enum HeaderEdit {
    Alg(&'static str),
    Remove(&'static str),
    Set(&'static str, Value),
    /// The same members, pretty-printed (whitespace only).
    Pretty,
    /// A duplicate of the first member, with another value.
    Duplicate(Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let algs =
        ["none", "None", "NONE", "HS256", "HS384", "HS512", "RS256", "RS512", "PS256", "ES256", "ES512", "EdDSA"];
    let header_edit = prop_oneof![
        select(algs.to_vec()).prop_map(HeaderEdit::Alg),
        select(vec!["alg", "kid", "typ", "enc", "epk", "cty"]).prop_map(HeaderEdit::Remove),
        prop_oneof![
            Just(("kid", json!("made-up"))),
            Just(("kid", json!(7))),
            Just(("typ", json!("dpop+jwt"))),
            Just(("typ", json!("JWT"))),
            Just(("crit", json!(["exp"]))),
            Just(("crit", json!([]))),
            Just(("b64", json!(false))),
            Just(("jku", json!("https://attacker.example/jwks"))),
            Just(("x5u", json!("https://attacker.example/cert"))),
            Just(("jwk", json!({"kty": "oct", "k": b64([0u8; 32])}))),
            Just(("zip", json!("DEF"))),
            Just(("enc", json!("A128GCM"))),
            Just(("alg", json!(["RS256"]))),
        ]
        .prop_map(|(name, value)| HeaderEdit::Set(name, value)),
        Just(HeaderEdit::Pretty),
        select(vec![json!("none"), json!(null), json!("RS256")]).prop_map(HeaderEdit::Duplicate),
    ];
    prop_oneof![
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        3 => (any::<usize>(), select(B64URL.chars().chain(".=+/ ".chars()).collect::<Vec<_>>()))
            .prop_map(|(at, with)| Mutation::Replace { at, with }),
        1 => any::<usize>().prop_map(|at| Mutation::Delete { at }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
        1 => any::<usize>().prop_map(|at| Mutation::DropSegment { at }),
        1 => any::<usize>().prop_map(|at| Mutation::DuplicateSegment { at }),
        1 => (any::<usize>(), select(vec!["=", "==", "==="])).prop_map(|(segment, pad)| Mutation::Pad { segment, pad }),
        1 => any::<usize>().prop_map(|segment| Mutation::StandardAlphabet { segment }),
        1 => (any::<usize>(), any::<usize>(), select(vec![' ', '\t', '\n', '\r', '\u{a0}']))
            .prop_map(|(segment, at, space)| Mutation::Whitespace { segment, at, space }),
        3 => header_edit.prop_map(Mutation::Header),
    ]
}

/// Applies `mutation`; total on any input, so mutations can be chained.
fn apply(token: &str, mutation: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    let n = segments.len();
    let lossy = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
            lossy(bytes)
        }
        Mutation::Insert { at, byte } => {
            bytes.insert(at % (bytes.len() + 1), *byte);
            lossy(bytes)
        }
        Mutation::Replace { at, with } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                let mut utf8 = [0; 4];
                bytes.splice(at..=at, with.encode_utf8(&mut utf8).bytes());
            }
            lossy(bytes)
        }
        Mutation::Delete { at } => {
            if !bytes.is_empty() {
                bytes.remove(at % bytes.len());
            }
            lossy(bytes)
        }
        Mutation::Truncate { keep } => {
            bytes.truncate(keep % (bytes.len() + 1));
            lossy(bytes)
        }
        Mutation::SwapSegments { a, b } => {
            segments.swap(a % n, b % n);
            segments.join(".")
        }
        Mutation::DropSegment { at } => {
            segments.remove(at % n);
            segments.join(".")
        }
        Mutation::DuplicateSegment { at } => {
            let segment = segments[at % n].clone();
            segments.insert(at % n, segment);
            segments.join(".")
        }
        Mutation::Pad { segment, pad } => {
            segments[segment % n].push_str(pad);
            segments.join(".")
        }
        Mutation::StandardAlphabet { segment } => {
            let segment = &mut segments[segment % n];
            match URL_SAFE_NO_PAD.decode(&*segment) {
                Ok(decoded) => *segment = STANDARD.encode(decoded),
                Err(_) => segment.push('+'),
            }
            segments.join(".")
        }
        Mutation::Whitespace { segment, at, space } => {
            let segment = &mut segments[segment % n];
            let at = (at % (segment.len() + 1)..=segment.len()).find(|i| segment.is_char_boundary(*i)).unwrap();
            segment.insert(at, *space);
            segments.join(".")
        }
        Mutation::Header(edit) => {
            let edited = URL_SAFE_NO_PAD.decode(&segments[0]).ok().and_then(|json| edit_header(&json, edit));
            if let Some(edited) = edited {
                segments[0] = b64(edited);
            }
            segments.join(".")
        }
    }
}

/// The header with `edit` applied, or `None` when it is not a JSON object.
fn edit_header(json: &[u8], edit: &HeaderEdit) -> Option<String> {
    let mut header: Map<String, Value> = serde_json::from_slice(json).ok()?;
    match edit {
        HeaderEdit::Alg(alg) => {
            header.insert("alg".into(), (*alg).into());
        }
        HeaderEdit::Remove(name) => {
            header.remove(*name);
        }
        HeaderEdit::Set(name, value) => {
            header.insert((*name).into(), value.clone());
        }
        HeaderEdit::Pretty => return serde_json::to_string_pretty(&header).ok(),
        HeaderEdit::Duplicate(value) => {
            let text = Value::Object(header.clone()).to_string();
            let (first, _) = header.iter().next()?;
            return Some(format!("{{{}:{value},{}", json!(first), &text[1..]));
        }
    }
    Some(Value::Object(header).to_string())
}

fn token_index() -> impl Strategy<Value = usize> {
    0..fixture().all_tokens().len()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Bit flips, insertions, deletions, segment swaps, base64 alphabet tricks and header
    /// edits, on every kind of token: none validates.
    #[test]
    fn mutated_tokens_never_validate(index in token_index(), mutations in vec(mutation(), 1..3)) {
        let f = fixture();
        let original = &f.all_tokens()[index];
        let mut token = original.clone();
        for mutation in &mutations {
            token = apply(&token, mutation);
        }
        prop_assume!(token != *original);
        let result = f.validate(&token);
        prop_assert!(result.is_err(), "{mutations:?} of token {index} still validates: {token}");
    }
}

/// A token signed with the real key for its algorithm, but breaking one rule of the policy:
/// the signature is fine, so only the rule itself can reject it.
#[derive(Debug, Clone)]
enum Resigned {
    Header(&'static str, Value),
    Claim(&'static str, Value),
    /// A claim set off by `offset` seconds from now.
    Time(&'static str, i64),
    Without(&'static str),
    /// The claim appears twice (with the real value last).
    Duplicate(&'static str),
    /// Signed with the real key of the token's algorithm, under another family's `kid`.
    ForeignKid(Algorithm),
    /// Signed with a freshly generated key under the real `kid`.
    Stranger,
    /// HS256, keyed with a representation of an asymmetric key's public material, under
    /// that key's `kid` (or none): the classic algorithm confusion.
    HsWithPublicKey {
        of: Algorithm,
        form: usize,
        with_kid: bool,
    },
    /// `alg: none`, no signature.
    Unsigned,
}

fn resigned() -> impl Strategy<Value = Resigned> {
    let asymmetric = || select(SIGNING[..6].to_vec());
    prop_oneof![
        prop_oneof![
            Just(("crit", json!(["exp"]))),
            Just(("crit", json!([]))),
            Just(("crit", json!(["b64"]))),
            Just(("b64", json!(false))),
            Just(("typ", json!("dpop+jwt"))),
            Just(("typ", json!("logout+jwt"))),
            Just(("typ", json!(""))),
            Just(("typ", json!(7))),
            Just(("alg", json!("none"))),
            Just(("alg", json!("RS1"))),
            Just(("kid", json!("made-up"))),
        ]
        .prop_map(|(name, value)| Resigned::Header(name, value)),
        prop_oneof![
            Just(("aud", json!("another-api"))),
            Just(("aud", json!(["another-api", "third-api"]))),
            Just(("aud", json!([]))),
            Just(("aud", json!(7))),
            Just(("iss", json!("https://attacker.example"))),
            Just(("iss", json!(null))),
            Just(("exp", json!("tomorrow"))),
            Just(("exp", json!(null))),
            Just(("nbf", json!(true))),
        ]
        .prop_map(|(name, value)| Resigned::Claim(name, value)),
        (select(vec!["exp", "nbf", "iat"]), 120i64..1_000_000_000).prop_map(|(name, offset)| match name {
            "exp" => Resigned::Time(name, -offset),
            _ => Resigned::Time(name, offset),
        }),
        select(vec!["exp", "aud", "iss"]).prop_map(Resigned::Without),
        select(vec!["iss", "aud", "exp"]).prop_map(Resigned::Duplicate),
        asymmetric().prop_map(Resigned::ForeignKid),
        Just(Resigned::Stranger),
        (asymmetric(), 0..4usize, any::<bool>()).prop_map(|(of, form, with_kid)| Resigned::HsWithPublicKey {
            of,
            form,
            with_kid
        }),
        Just(Resigned::Unsigned),
    ]
}

/// The token of `alg` with `edit` applied, signed as described.
fn resign(alg: Algorithm, edit: &Resigned) -> String {
    let f = fixture();
    let scope = GRANTED.join(" ");
    let mint = || f.issuer.mint().alg(alg).scope(&scope);
    let key = f.key(alg);
    match edit {
        Resigned::Header(name, value) => mint().header(name, value.clone()).sign(),
        Resigned::Claim(name, value) => mint().claim(name, value.clone()).sign(),
        Resigned::Time(name, offset) => mint().claim(name, now() + offset).sign(),
        Resigned::Without(name) => mint().without_claim(name).sign(),
        Resigned::Duplicate(name) => {
            let real = match *name {
                "iss" => json!(f.issuer.issuer()),
                "aud" => json!(f.issuer.audience()),
                _ => json!(now() + 600),
            };
            let claims = json!({"sub": "alice", "scope": scope, "iat": now()});
            let mut claims = claims.to_string();
            claims.pop();
            // Both values are acceptable on their own: only the duplicate is wrong.
            let mut others = json!({"iss": f.issuer.issuer(), "aud": f.issuer.audience(), "exp": now() + 600});
            others.as_object_mut().unwrap().remove(*name);
            let others = others.to_string();
            let payload = format!("{claims},{name:?}:{real},{},{name:?}:{real}}}", &others[1..others.len() - 1]);
            let header = json!({"alg": alg.as_str(), "kid": key.kid(), "typ": "at+jwt"}).to_string();
            key.sign_compact(&header, &payload)
        }
        Resigned::ForeignKid(other) => mint().header("kid", f.key(*other).kid()).sign(),
        Resigned::Stranger => {
            let stranger = match alg {
                Algorithm::HS256 => TestKey::hmac(alg, &[0x5a; 32]),
                _ => TestKey::generate(alg),
            };
            mint().sign_with(&stranger.with_kid(key.kid()))
        }
        Resigned::HsWithPublicKey { of, form, with_kid } => {
            let public = f.key(*of);
            let jwk = public.public_jwk();
            let material = match form {
                0 => jwk.to_string().into_bytes(),
                1 => serde_json::to_vec_pretty(&jwk).unwrap(),
                // The raw big-endian modulus or curve point.
                2 => URL_SAFE_NO_PAD.decode(jwk.get("n").or(jwk.get("x")).unwrap().as_str().unwrap()).unwrap(),
                _ => jwk.get("n").or(jwk.get("x")).unwrap().as_str().unwrap().as_bytes().to_vec(),
            };
            let confused = TestKey::hmac(Algorithm::HS256, &material).with_kid(public.kid());
            if *with_kid { mint().sign_with(&confused) } else { mint().without_header("kid").sign_with(&confused) }
        }
        Resigned::Unsigned => mint().unsigned(),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Header and claim edits, foreign and stranger keys, HMAC keyed with public keys, and
    /// `alg: none`, each signed properly: the policy rejects every one.
    #[test]
    fn properly_signed_policy_violations_never_validate(alg in select(SIGNING.to_vec()), edit in resigned()) {
        let f = fixture();
        if let Resigned::ForeignKid(other) = &edit {
            prop_assume!(*other != alg, "another key's kid");
        }
        let token = resign(alg, &edit);
        let result = f.validate(&token);
        prop_assert!(result.is_err(), "{alg} with {edit:?} validates");
        // Wrapped in a JWE to a real key, it fails just the same.
        #[cfg(feature = "jwe")]
        {
            let (key, _) = &f.encrypted[token.len() % f.encrypted.len()];
            let wrapped = key.encrypt(token.as_bytes(), "A256GCM", Some("JWT"));
            prop_assert!(f.validate(&wrapped).is_err(), "{alg} with {edit:?} validates inside a JWE");
        }
    }
}

#[test]
fn the_policy_violations_are_checked_against_tokens_that_otherwise_validate() {
    // The same constructions without the violation: a Duplicate with one copy, the real
    // kid, the real key.
    let f = fixture();
    for alg in SIGNING {
        let scope = GRANTED.join(" ");
        assert!(f.validate(&f.issuer.mint().alg(alg).scope(&scope).sign()).is_ok(), "{alg}");
        let key = f.key(alg);
        let header = json!({"alg": alg.as_str(), "kid": key.kid(), "typ": "at+jwt"}).to_string();
        let payload = json!({
            "sub": "alice", "scope": scope, "iat": now(), "iss": f.issuer.issuer(),
            "aud": f.issuer.audience(), "exp": now() + 600});
        assert!(f.validate(&key.sign_compact(&header, &payload.to_string())).is_ok(), "{alg}");
        for (name, offset) in [("exp", 30), ("nbf", -3600), ("iat", 30)] {
            let token = f.issuer.mint().alg(alg).claim(name, now() + offset).sign();
            assert!(f.validate(&token).is_ok(), "{alg} {name}");
        }
    }
}

#[cfg(feature = "jwe")]
mod jwe {
    use super::*;

    /// Found by `token_shaped_junk_never_validates`: an AES key-wrap JWE (A*KW, or
    /// ECDH-ES+A*KW with a valid ephemeral key) whose encrypted-key segment is shorter
    /// than the 8-byte integrity block made josekit compute `len - 8` and panic (overflow
    /// in debug builds, a capacity overflow in release), for any client that knows a
    /// configured `kid`.
    #[test]
    fn a_short_aes_key_wrap_segment_is_rejected_not_a_panic() {
        let f = fixture();
        for (key, token) in &f.encrypted {
            if !key.alg().ends_with("KW") {
                continue;
            }
            for wrapped in [&[][..], &[0u8][..], &[0; 7][..], &[0; 8][..], &[0; 16][..], &[0; 41][..]] {
                let mut segments: Vec<&str> = token.split('.').collect();
                let encoded = b64(wrapped);
                segments[1] = &encoded;
                let forged = segments.join(".");
                assert!(f.validate(&forged).is_err(), "{} with a {}-byte wrapped key", key.alg(), wrapped.len());
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Reencrypted {
        /// Extra protected-header members, encrypted properly.
        Members(Vec<(&'static str, Value)>),
        /// The claims directly, without an inner signature.
        Unsigned,
        /// An unsecured (`alg: none`) token inside.
        UnsignedInner,
        /// Another JWE inside.
        Nested,
    }

    fn reencrypted() -> impl Strategy<Value = Reencrypted> {
        prop_oneof![
            Just(Reencrypted::Members(vec![("enc", json!("A256GCM")), ("zip", json!("DEF"))])),
            Just(Reencrypted::Members(vec![("enc", json!("A256GCM")), ("crit", json!(["exp"])), ("exp", json!(1))])),
            Just(Reencrypted::Members(vec![("enc", json!("A256GCM")), ("crit", json!([]))])),
            Just(Reencrypted::Members(vec![
                ("enc", json!("A128CBC-HS256")),
                ("cty", json!("JWT")),
                ("kid", json!("made-up"))
            ])),
            Just(Reencrypted::Unsigned),
            Just(Reencrypted::UnsignedInner),
            Just(Reencrypted::Nested),
        ]
    }

    proptest! {
        #![proptest_config(config(48))]

        /// Properly encrypted tokens that break a JWE rule: compression, unknown critical
        /// headers, a `kid` that matches no key, no inner signature, nesting.
        #[test]
        fn properly_encrypted_violations_never_validate(index in 0..ENCRYPTION.len(), edit in reencrypted()) {
            let f = fixture();
            let (key, token) = &f.encrypted[index];
            let inner = || f.issuer.mint().alg(Algorithm::ES256).scope("read write");
            let made = match &edit {
                Reencrypted::Members(members) => {
                    let members = members.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
                    key.encrypt_with_header(inner().sign().as_bytes(), members)
                }
                Reencrypted::Unsigned => {
                    let payload = URL_SAFE_NO_PAD.decode(inner().sign().split('.').nth(1).unwrap()).unwrap();
                    key.encrypt(&payload, "A256GCM", None)
                }
                Reencrypted::UnsignedInner => key.encrypt(inner().unsigned().as_bytes(), "A256GCM", Some("JWT")),
                Reencrypted::Nested => key.encrypt(token.as_bytes(), "A256GCM", Some("JWT"))};
            prop_assert!(f.validate(&made).is_err(), "{edit:?} with {} validates", key.alg());
            // The control: the same key and content encryption around a good token pass.
            prop_assert!(f.validate(&key.encrypt(inner().sign().as_bytes(), "A128CBC-HS256", Some("JWT"))).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Any Authorization header through BearerAuth: a well-formed RFC 6750 answer, and the
// inner service only for a valid token.
// ---------------------------------------------------------------------------------------

/// A parsed `WWW-Authenticate: Bearer …` challenge (RFC 6750 §3).
#[derive(Debug, Default)]
struct Challenge {
    params: BTreeMap<String, String>,
}

/// RFC 6750 §3: `realm`, `scope`, `error`, `error_description` and `error_uri` are quoted
/// strings whose characters are %x20-21 / %x23-5B / %x5D-7E (no `"` or `\`, so no escapes).
fn rfc6750_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

fn parse_challenge(value: &HeaderValue) -> Result<Challenge, String> {
    let text = value.to_str().map_err(|_| "not visible ASCII".to_owned())?;
    let rest = text.strip_prefix("Bearer").ok_or("not a Bearer challenge")?;
    let mut challenge = Challenge::default();
    if rest.is_empty() {
        return Ok(challenge);
    }
    let mut rest = rest.strip_prefix(' ').ok_or("no space after the scheme")?;
    loop {
        let (name, after) = rest.split_once("=\"").ok_or("a parameter is not name=\"value\"")?;
        if !["realm", "scope", "error", "error_description", "error_uri"].contains(&name) {
            return Err(format!("unknown parameter {name}"));
        }
        let end = after.find('"').ok_or("unterminated quoted string")?;
        let value = &after[..end];
        if let Some(bad) = value.chars().find(|c| !rfc6750_char(*c)) {
            return Err(format!("{bad:?} in {name}"));
        }
        if challenge.params.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(format!("{name} twice"));
        }
        rest = &after[end + 1..];
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(", ").ok_or("parameters are not separated by \", \"")?;
    }
    if let Some(error) = challenge.params.get("error")
        && !["invalid_request", "invalid_token", "insufficient_scope"].contains(&error.as_str())
    {
        return Err(format!("unknown error code {error}"));
    }
    Ok(challenge)
}

/// What the layer does to a configured realm or a required scope: RFC 6750 characters kept,
/// anything else replaced by `?`.
fn sanitized(text: &str) -> String {
    text.chars().map(|c| if rfc6750_char(c) { c } else { '?' }).collect()
}

#[derive(Debug, Clone)]
struct Call {
    headers: Vec<Vec<u8>>,
    grpc: bool,
    realm: Option<String>,
    verbose: bool,
    required: Vec<String>,
    keyless: bool,
}

/// Header values: raw bytes, and `scheme separator token trailer` with real, mutated and
/// junk tokens, so that valid tokens are among them.
fn authorization() -> impl Strategy<Value = Vec<u8>> {
    let f = fixture();
    let tokens = f.all_tokens();
    let token = prop_oneof![
        3 => select(tokens.clone()),
        1 => (select(tokens), mutation()).prop_map(|(t, m)| apply(&t, &m)),
        1 => "[ -~]{0,40}",
        1 => Just(String::new()),
    ];
    let scheme = select(vec!["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Bearer,", "Token", "", "Bearer:"]);
    let separator = select(vec![" ", "  ", "   ", "\t", "", ", "]);
    let trailer = select(vec!["", "", "", " ", " x", ",", ", Bearer abc", "\t", "="]);
    prop_oneof![
        1 => vec(any::<u8>(), 0..64),
        6 => (scheme, separator, token, trailer).prop_map(|(s, sep, t, tr)| format!("{s}{sep}{t}{tr}").into_bytes()),
    ]
}

/// One `Bearer <valid token>` header, with the scheme in any case and any number of
/// spaces, so that valid requests are a good share of the cases.
fn valid_authorization() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (select(vec!["Bearer", "bearer", "BEARER", "beARer"]), " {1,3}", select(fixture().all_tokens()))
        .prop_map(|(scheme, spaces, token)| vec![format!("{scheme}{spaces}{token}").into_bytes()])
}

fn call() -> impl Strategy<Value = Call> {
    let required = vec(
        prop_oneof![
            4 => select(vec!["read".to_owned(), "write".to_owned(), "admin".to_owned()]),
            1 => any::<String>(),
        ],
        0..3,
    );
    (
        prop_oneof![2 => vec(authorization(), 0..3), 1 => valid_authorization()],
        prop::bool::weighted(0.25),
        proptest::option::of(any::<String>()),
        any::<bool>(),
        required,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(headers, grpc, realm, verbose, required, keyless)| Call {
            headers,
            grpc,
            realm,
            verbose,
            required,
            keyless,
        })
}

/// The token a request carries if it is exactly one `Bearer <valid token>` header.
fn valid_token_of(call: &Call) -> Option<String> {
    let [value] = call.headers.as_slice() else { return None };
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && fixture().all_tokens().iter().any(|t| t == token))
        .then(|| token.to_owned())
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    reached: usize,
}

fn send(call: &Call) -> Option<Answer> {
    let f = fixture();
    let mut request = Request::get("/resource");
    for value in &call.headers {
        // Values that cannot be a header value never reach a service.
        let value = HeaderValue::from_bytes(value).ok()?;
        request = request.header(http::header::AUTHORIZATION, value);
    }
    if call.grpc {
        request = request.header(http::header::CONTENT_TYPE, "application/grpc+proto");
    }
    let request = request.body(()).unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let inner = tower::service_fn(move |request: Request<()>| {
        let counter = counter.clone();
        async move {
            assert!(request.extensions().get::<Claims>().is_some(), "the inner service sees validated claims");
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let validator = if call.keyless { f.keyless.clone() } else { f.validator.clone() };
    let mut layer = BearerAuthLayer::new(validator).verbose_errors(call.verbose);
    if let Some(realm) = &call.realm {
        layer = layer.realm(realm);
    }
    let service = layer.layer(RequireScopeLayer::new(&call.required).layer(inner));
    let (parts, body) = f.runtime.block_on(async {
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    });
    Some(Answer { status: parts.status, headers: parts.headers, body, reached: reached.load(Ordering::SeqCst) })
}

proptest! {
    #![proptest_config(config(768))]

    #[test]
    fn any_authorization_header_gets_a_well_formed_answer(call in call()) {
        let Some(answer) = send(&call) else { return Ok(()) };
        let valid = valid_token_of(&call).filter(|_| !call.keyless);
        let granted = call.required.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()).all(|s| GRANTED.contains(&s));
        let grpc_status = answer.headers.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());

        // The inner service runs exactly for a valid token with the scopes it needs.
        let expect_reached = valid.is_some() && granted;
        prop_assert_eq!(answer.reached, usize::from(expect_reached), "{:?}", call);
        if expect_reached {
            prop_assert_eq!(answer.status, StatusCode::OK);
            prop_assert!(grpc_status.is_none());
            return Ok(());
        }

        let status = if call.grpc {
            // gRPC: HTTP 200 with the status in the headers (UNAUTHENTICATED,
            // PERMISSION_DENIED, INVALID_ARGUMENT, UNAVAILABLE).
            prop_assert_eq!(answer.status, StatusCode::OK);
            let status = match grpc_status.as_deref() {
                Some("16") => StatusCode::UNAUTHORIZED,
                Some("7") => StatusCode::FORBIDDEN,
                Some("3") => StatusCode::BAD_REQUEST,
                Some("14") => StatusCode::SERVICE_UNAVAILABLE,
                other => return Err(TestCaseError::fail(format!("grpc-status {other:?}")))};
            let message = answer.headers.get("grpc-message").expect("a grpc-message");
            prop_assert!(message.to_str().is_ok());
            status
        } else {
            answer.status
        };
        let www = answer.headers.get(http::header::WWW_AUTHENTICATE);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            prop_assert!(call.keyless, "503 only when no keys were ever loaded");
            prop_assert!(www.is_none());
            prop_assert!(answer.headers.contains_key(http::header::RETRY_AFTER));
            return Ok(());
        }
        let challenge = parse_challenge(www.expect("a WWW-Authenticate challenge"))
            .map_err(|e| TestCaseError::fail(format!("{e}: {www:?}")))?;
        let error = challenge.params.get("error").map(String::as_str);
        match status {
            StatusCode::UNAUTHORIZED => prop_assert!(matches!(error, None | Some("invalid_token")), "{error:?}"),
            StatusCode::BAD_REQUEST => prop_assert_eq!(error, Some("invalid_request")),
            StatusCode::FORBIDDEN => {
                prop_assert_eq!(error, Some("insufficient_scope"));
                prop_assert!(valid.is_some() && !granted);
                prop_assert_eq!(challenge.params.get("scope"), Some(&sanitized(&call.required.join(" "))));
            }
            other => return Err(TestCaseError::fail(format!("status {other}")))}
        if status != StatusCode::FORBIDDEN && valid.is_some() {
            return Err(TestCaseError::fail(format!("a valid token got {status}")));
        }
        let realm = call.realm.as_deref().map(sanitized);
        prop_assert_eq!(challenge.params.get("realm"), realm.as_ref());
        prop_assert_eq!(
            challenge.params.contains_key("error_description"),
            call.verbose && error.is_some(),
            "descriptions only when verbose"
        );
        if !call.verbose || call.grpc || error.is_none() {
            prop_assert!(answer.body.is_empty());
        } else {
            let body: Value = serde_json::from_slice(&answer.body).unwrap();
            prop_assert_eq!(body["error"].as_str(), error);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// A challenge built from any description (the scopes a route requires) is a valid
    /// header value with only RFC 6750 characters in its quoted strings.
    #[test]
    fn challenges_from_arbitrary_descriptions_are_valid_header_values(required in any::<String>()) {
        let rejection = Rejection::InsufficientScope { required: required.clone() };
        let value = rejection.challenge(&ResponseStyle::default()).expect("a challenge");
        let challenge = parse_challenge(&value).map_err(TestCaseError::fail)?;
        prop_assert_eq!(challenge.params.get("scope"), Some(&sanitized(&required)));
        prop_assert_eq!(challenge.params.get("error").map(String::as_str), Some("insufficient_scope"));
        prop_assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
    }
}

// ---------------------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------------------

/// The public JWKs the thumbprint property rewrites: one per signing key, the HMAC one
/// with its `k`.
fn public_jwks() -> Vec<Value> {
    let f = fixture();
    SIGNING.iter().map(|&alg| f.key(alg).public_jwk()).collect()
}

/// RFC 7638 §3.2: the required members by `kty`, in lexicographic order.
fn required_members(jwk: &Value) -> &'static [&'static str] {
    match jwk["kty"].as_str().unwrap() {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => &["k", "kty"],
    }
}

/// The RFC 7638 thumbprint computed here, independently of the crate.
fn rfc7638(jwk: &Value) -> [u8; 32] {
    let canonical: Vec<String> =
        required_members(jwk).iter().map(|name| format!("{}:{}", json!(name), jwk[*name])).collect();
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{{{}}}", canonical.join(",")).as_bytes());
    digest.as_ref().try_into().unwrap()
}

fn parse_jwk(json: &str) -> Jwk {
    Jwk::from_json_trusted(json.as_bytes()).expect("a well-formed JWK")
}

proptest! {
    #![proptest_config(config(256))]

    /// Member order, whitespace, `kid` and extra members do not change a key's thumbprint,
    /// which is RFC 7638's.
    #[test]
    fn jwk_thumbprints_ignore_order_whitespace_and_optional_members(
        index in 0..SIGNING.len(),
        order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
        spaces in vec(select(vec!["", " ", "\n", "\t", "\r\n  "]), 40),
        drop_optional in vec(any::<bool>(), 3),
        kid in "[ -~]{0,16}",
        extra in btree_map("x-[a-z]{1,8}", "[a-z0-9]{0,8}", 0..3),
    ) {
        let jwk = &public_jwks()[index];
        let original = parse_jwk(&jwk.to_string());
        prop_assert_eq!(original.thumbprint(), &rfc7638(jwk));

        let mut members: Vec<(String, Value)> = jwk.as_object().unwrap().clone().into_iter().collect();
        for (drop, name) in drop_optional.iter().zip(["kid", "use", "alg"]) {
            if *drop {
                members.retain(|(n, _)| n != name);
            }
        }
        if !members.iter().any(|(n, _)| n == "kid") {
            members.push(("kid".into(), kid.into()));
        }
        members.extend(extra.into_iter().map(|(k, v)| (k, Value::from(v))));
        let mut ordered: Vec<&(String, Value)> = Vec::new();
        for i in order.iter().filter(|i| **i < members.len()) {
            ordered.push(&members[*i]);
        }
        ordered.extend(members.iter().skip(order.len()));
        let mut space = spaces.iter().cycle();
        let mut text = String::from("{");
        for (i, (name, value)) in ordered.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{}{}{}:{}{}", space.next().unwrap(), json!(name), space.next().unwrap(), space.next().unwrap(), value));
        }
        text.push_str(space.next().unwrap());
        text.push('}');
        let rewritten = parse_jwk(&text);
        prop_assert_eq!(rewritten.thumbprint(), original.thumbprint(), "{}", text);
    }
}

/// RFC 6749 §3.3 scope tokens: %x21 / %x23-5B / %x5D-7E.
fn scope_token() -> impl Strategy<Value = String> {
    "[!#-\\[\\]-~]{1,10}"
}

/// ASCII whitespace runs, as `split_ascii_whitespace` knows them.
fn whitespace() -> impl Strategy<Value = String> {
    "[ \t\n\r\x0c]{1,3}"
}

fn joined(tokens: &[String], spaces: &[String]) -> String {
    let mut text = spaces[0].clone();
    for (token, space) in tokens.iter().zip(spaces.iter().cycle().skip(1)) {
        text.push_str(token);
        text.push_str(space);
    }
    text
}

fn hash_of(key: &CacheKey) -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new).hash_one(key)
}

proptest! {
    #![proptest_config(config(256))]

    /// A cache key's scope and resources are normalised: order, repetition and spacing do
    /// not matter, and normalising twice changes nothing.
    #[test]
    fn cache_key_normalisation_is_order_independent_and_idempotent(
        tokens in vec(scope_token(), 0..6),
        spaces in vec(whitespace(), 1..8),
        rotation in any::<usize>(),
        resources in vec("https://r[0-9]\\.example/[a-z]{0,3}", 0..5),
        audience in proptest::option::of("[a-z]{1,8}"),
        grant in select(vec![GrantKind::ClientCredentials, GrantKind::RefreshToken, GrantKind::AuthorizationCode]),
    ) {
        let mut permuted = tokens.clone();
        permuted.rotate_left(rotation % tokens.len().max(1));
        permuted.extend(tokens.iter().take(2).cloned());
        let mut resources_permuted = resources.clone();
        resources_permuted.reverse();
        resources_permuted.extend(resources.first().cloned());

        let key = |scope: &str, resources: &[String]| {
            CacheKey::new("https://idp.example/token", "svc", grant, Some(scope), resources.to_vec(), audience.as_deref())
        };
        let a = key(&joined(&tokens, &spaces), &resources);
        let b = key(&joined(&permuted, &spaces[1..].iter().chain(&spaces[..1]).cloned().collect::<Vec<_>>()), &resources_permuted);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(hash_of(&a), hash_of(&b));

        let expected: BTreeSet<&str> = tokens.iter().map(String::as_str).collect();
        let expected = (!expected.is_empty()).then(|| expected.into_iter().collect::<Vec<_>>().join(" "));
        prop_assert_eq!(a.scope(), expected.as_deref());
        let sorted: BTreeSet<&String> = resources.iter().collect();
        prop_assert_eq!(a.resources().iter().collect::<Vec<_>>(), sorted.into_iter().collect::<Vec<_>>());

        let again = CacheKey::new(a.endpoint(), a.client_id(), a.grant(), a.scope(), a.resources().to_vec(), a.audience());
        prop_assert_eq!(&again, &a);
        prop_assert_eq!(a.grant(), grant);
        prop_assert_eq!(a.audience(), audience.as_deref());
    }
}

#[test]
fn a_token_endpoints_key_normalises_like_cache_key_new() {
    let key = TokenEndpoint::builder("https://idp.example/token", "svc", "s3cret")
        .scope("  write read\tread ")
        .resource("https://b.example")
        .resource("https://a.example")
        .resource("https://b.example")
        .build()
        .unwrap()
        .key()
        .clone();
    let expected = CacheKey::new(
        "https://idp.example/token",
        "svc",
        GrantKind::ClientCredentials,
        Some("read write"),
        ["https://a.example", "https://b.example"],
        None,
    );
    assert_eq!(key, expected);
}

#[derive(Debug, Clone)]
enum ExpiresIn {
    Absent,
    Null,
    Number(u64),
    Text(u64, &'static str),
    Float(u32),
}

fn expires_in() -> impl Strategy<Value = ExpiresIn> {
    prop_oneof![
        Just(ExpiresIn::Absent),
        Just(ExpiresIn::Null),
        any::<u64>().prop_map(ExpiresIn::Number),
        (0u64..100_000_000, select(vec!["", " ", "  "])).prop_map(|(n, pad)| ExpiresIn::Text(n, pad)),
        any::<u32>().prop_map(ExpiresIn::Float),
    ]
}

/// A year and a day: the longest lifetime a response is believed.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

proptest! {
    #![proptest_config(config(512))]

    /// A serialized token response parses back to what was serialized, whatever else it
    /// carries, and its `Debug` shows neither token.
    #[test]
    fn token_responses_round_trip(
        access in "[!-~]{16,64}",
        kind in select(vec!["Bearer", "bearer", "BEARER", "bEARER"]),
        lifetime in expires_in(),
        refresh in proptest::option::of("[A-Za-z0-9._~-]{16,48}"),
        scope in proptest::option::of(any::<String>()),
        extra in btree_map("[a-z_-]{1,12}", any::<i64>(), 0..4),
    ) {
        let mut object = Map::new();
        for (name, value) in extra {
            object.insert(name, value.into());
        }
        object.insert("access_token".into(), access.clone().into());
        object.insert("token_type".into(), kind.into());
        let expected = match lifetime {
            ExpiresIn::Absent => {
                object.remove("expires_in");
                None
            }
            ExpiresIn::Null => {
                object.insert("expires_in".into(), Value::Null);
                None
            }
            ExpiresIn::Number(n) => {
                object.insert("expires_in".into(), n.into());
                Some(Duration::from_secs(n).min(MAX_LIFETIME))
            }
            ExpiresIn::Text(n, pad) => {
                object.insert("expires_in".into(), format!("{pad}{n}{pad}").into());
                Some(Duration::from_secs(n).min(MAX_LIFETIME))
            }
            ExpiresIn::Float(n) => {
                object.insert("expires_in".into(), (f64::from(n)).into());
                Some(Duration::from_secs(n.into()).min(MAX_LIFETIME))
            }
        };
        match &refresh {
            Some(token) => object.insert("refresh_token".into(), token.clone().into()),
            None => object.remove("refresh_token")};
        match &scope {
            Some(scope) => object.insert("scope".into(), scope.clone().into()),
            None => object.remove("scope")};
        let body = Value::Object(object).to_string();
        let response = TokenResponse::parse(body.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
        prop_assert_eq!(response.access_token(), access.as_str());
        prop_assert_eq!(response.expires_in(), expected);
        prop_assert_eq!(response.refresh_token().map(Secret::expose), refresh.as_deref().map(str::as_bytes));
        prop_assert_eq!(response.scope(), scope.as_deref());
        let debug = format!("{response:?}");
        prop_assert!(!debug.contains(&access), "{}", debug);
        if let Some(refresh) = &refresh {
            prop_assert!(!debug.contains(refresh.as_str()), "{}", debug);
        }
    }

    /// An access token that cannot go into a header is refused, not passed on.
    #[test]
    fn access_tokens_that_cannot_be_a_header_are_refused(
        prefix in "[!-~]{0,8}",
        bad in "[\\x00- \\x7f\u{80}-\u{10ffff}]",
        suffix in "[!-~]{0,8}",
    ) {
        let token = format!("{prefix}{bad}{suffix}");
        let body = json!({"access_token": token, "token_type": "Bearer"}).to_string();
        prop_assert!(matches!(
            TokenResponse::parse(body.as_bytes()),
            Err(TokenError::InvalidResponse(InvalidResponse::MalformedAccessToken))
        ));
    }

    /// `Secret` never shows its bytes, and every way to make one keeps them exactly.
    #[test]
    fn secrets_are_redacted_and_kept_exactly(bytes in vec(any::<u8>(), 0..256), text in any::<String>()) {
        let secret = Secret::new(bytes.clone());
        prop_assert_eq!(format!("{secret:?}"), "Secret(***)");
        prop_assert_eq!(format!("{:#?}", secret), "Secret(***)");
        prop_assert_eq!(secret.expose(), bytes.as_slice());
        prop_assert_eq!(secret.len(), bytes.len());
        prop_assert_eq!(secret.is_empty(), bytes.is_empty());
        prop_assert_eq!(&Secret::from(bytes.as_slice()), &secret);
        prop_assert_eq!(&Secret::from(bytes.clone()), &secret);
        let from_text = Secret::from(text.as_str());
        prop_assert_eq!(from_text.expose(), text.as_bytes());
        prop_assert_eq!(&Secret::from(text.clone()), &from_text);
        prop_assert_eq!(format!("{from_text:?}"), "Secret(***)");
    }
}

// Claims.

/// Any JSON value, with numbers that print and parse back exactly.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Registered claims the policy reads, and the rest: names that are not registered.
const REGISTERED: [&str; 11] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp", "scope", "scp"];

fn numeric_date() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000_000i64..4_000_000_000).prop_map(|n| Value::from(n as f64 + 0.5)),
    ]
}

fn claims_set() -> impl Strategy<Value = Map<String, Value>> {
    let text = || proptest::option::of(any::<String>().prop_map(Value::from));
    let aud = proptest::option::of(prop_oneof![
        any::<String>().prop_map(Value::from),
        vec(any::<String>(), 0..4).prop_map(Value::from),
    ]);
    let scp = proptest::option::of(prop_oneof![
        vec(scope_token(), 0..4).prop_map(Value::from),
        scope_token().prop_map(Value::from),
    ]);
    let dates = (
        proptest::option::of(numeric_date()),
        proptest::option::of(numeric_date()),
        proptest::option::of(numeric_date()),
    );
    let extra = btree_map(
        any::<String>().prop_filter("not registered", |k| !REGISTERED.contains(&k.as_str())),
        json_value(),
        0..5,
    );
    ((text(), text(), aud, text(), text(), text()), (text(), scp), dates, extra).prop_map(
        |((iss, sub, aud, jti, client_id, azp), (scope, scp), (exp, nbf, iat), extra)| {
            let mut claims: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [
                ("iss", iss),
                ("sub", sub),
                ("aud", aud),
                ("jti", jti),
                ("client_id", client_id),
                ("azp", azp),
                ("scope", scope),
                ("scp", scp),
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
            ] {
                if let Some(value) = value {
                    claims.insert(name.into(), value);
                }
            }
            claims
        },
    )
}

fn date_of(value: Option<&Value>) -> Option<i64> {
    value.map(|v| match (v.as_i64(), v.as_u64(), v.as_f64()) {
        (Some(n), _, _) => n,
        (None, Some(_), _) => i64::MAX,
        (None, None, Some(f)) => f.floor() as i64,
        _ => unreachable!("a numeric date"),
    })
}

fn check_claims(claims: &Claims, input: &Map<String, Value>) -> Result<(), TestCaseError> {
    let text = |name: &str| input.get(name).map(|v| v.as_str().unwrap());
    prop_assert_eq!(claims.issuer(), text("iss"));
    prop_assert_eq!(claims.subject(), text("sub"));
    prop_assert_eq!(claims.token_id(), text("jti"));
    prop_assert_eq!(claims.client_id(), text("client_id").or(text("azp")));
    let audience: Vec<&str> = match input.get("aud") {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one.as_str()],
        Some(list) => list.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect(),
    };
    prop_assert_eq!(claims.audience().collect::<Vec<_>>(), audience);
    prop_assert_eq!(claims.expires_at(), date_of(input.get("exp")));
    prop_assert_eq!(claims.not_before(), date_of(input.get("nbf")));
    prop_assert_eq!(claims.issued_at(), date_of(input.get("iat")));
    let scopes = match (input.get("scope"), input.get("scp")) {
        (Some(scope), _) => scope.as_str().unwrap().to_owned(),
        (None, Some(Value::String(one))) => one.clone(),
        (None, Some(list)) => {
            list.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect::<Vec<_>>().join(" ")
        }
        (None, None) => String::new(),
    };
    prop_assert_eq!(claims.scopes().iter().collect::<Vec<_>>(), scopes.split_ascii_whitespace().collect::<Vec<_>>());
    for (name, value) in input {
        let got = claims.get::<Value>(name);
        prop_assert_eq!(got.as_ref(), Some(value), "{}", name);
    }
    prop_assert_eq!(serde_json::to_value(claims).unwrap(), Value::Object(input.clone()));
    prop_assert_eq!(serde_json::from_str::<Value>(claims.as_json()).unwrap(), Value::Object(input.clone()));
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    /// `Claims` read from any claims set (escapes, any Unicode, nesting) give back exactly
    /// that set, as JSON and through every accessor.
    #[test]
    fn claims_round_trip_to_json(input in claims_set(), pretty in any::<bool>()) {
        let value = Value::Object(input.clone());
        let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
        let claims: Claims = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(claims.as_json(), text.as_str());
        check_claims(&claims, &input)?;
        check_claims(&claims.clone(), &input)?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// The same, through a signed token and the validator: what the handler gets is what
    /// the issuer signed.
    #[test]
    fn validated_claims_are_the_signed_claims(
        sub in any::<String>(),
        extra in btree_map(any::<String>().prop_filter("not registered", |k| !REGISTERED.contains(&k.as_str())), json_value(), 0..4),
        alg in select(vec![Algorithm::EdDSA, Algorithm::HS256, Algorithm::ES256]),
    ) {
        let f = fixture();
        let mut mint = f.issuer.mint().alg(alg).subject(&sub);
        for (name, value) in &extra {
            mint = mint.claim(name, value.clone());
        }
        let token = mint.sign();
        prop_assume!(token.len() <= tower_oauth::validate::DEFAULT_MAX_TOKEN_SIZE);
        let claims = f.validate(&token).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let signed: Map<String, Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        check_claims(&claims, &signed)?;
        prop_assert_eq!(claims.subject(), Some(sub.as_str()));
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Scopes read from `scope` (any whitespace between tokens) or `scp` (string or array)
    /// are exactly the tokens that went in.
    #[test]
    fn scopes_round_trip(tokens in vec(scope_token(), 0..8), spaces in vec(whitespace(), 1..4), other in scope_token(), form in 0..3u8) {
        let scope = joined(&tokens, &spaces);
        let claims = match form {
            0 => json!({ "scope": scope }),
            1 => json!({ "scp": tokens }),
            _ => json!({ "scp": tokens.join(" ") })};
        let claims: Claims = serde_json::from_value(claims).unwrap();
        let scopes = claims.scopes();
        prop_assert_eq!(scopes.iter().collect::<Vec<_>>(), tokens.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(scopes.is_empty(), tokens.is_empty());
        prop_assert!(scopes.contains_all(tokens.iter().map(String::as_str)));
        for token in &tokens {
            prop_assert!(claims.has_scope(token));
        }
        prop_assert_eq!(claims.has_scope(&other), tokens.contains(&other));
        if form == 0 {
            prop_assert_eq!(scopes.as_str(), scope.as_str());
        }
        // Scope tokens never contain spaces, so a joined pair is never granted.
        if tokens.len() >= 2 {
            let pair = format!("{} {}", tokens[0], tokens[1]);
            prop_assert!(!claims.has_scope(&pair));
        }
    }
}
