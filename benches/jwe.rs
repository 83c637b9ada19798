//! Encrypted-token benchmarks (feature `jwe`): decrypt + verify of a nested RS256 access
//! token per key-management algorithm, side by side with the floor measured in the same run,
//! the verified-token cache, and what one bogus JWE can cost before it is rejected.
//!
//! Per algorithm (RSA-OAEP-256 and ECDH-ES+A256KW, both with A256GCM, around the same RS256
//! JWS):
//! - `floor`: josekit's `deserialize_compact` with a decrypter built beforehand (the
//!   private-key operation, the key unwrap and the content decryption), then the RS256
//!   verify with a pre-parsed aws-lc-rs key over the pre-split inner token: the least any
//!   implementation on these backends can do;
//! - `floor_decrypt_only` and `floor_rs256_verify_only`: the two halves of that floor;
//! - `validator`: `Validator::validate_with_current_keys` with a fixed key set;
//! - `tower_service`: the bearer layer over a trivial `tower::service_fn`;
//! - `cached`: the same with `VerifiedTokenCache`, the same token every time.
//!
//! `bogus/*`: the CPU a single bad JWE forces through `validate_with_current_keys` before its
//! rejection: (a) an unknown `kid` (no private-key operation), (b) the right `kid` with a
//! corrupted encrypted key (one private-key operation, then failure), (c) `zip` or PBES2
//! (refused by the header pre-checks).
//!
//! Tokens are made locally; nothing touches the network. Run with `cargo bench --bench jwe`.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;

use aws_lc_rs::signature;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use josekit::jwe::{self as jose_jwe, JweDecrypter};
use josekit::jwk::Jwk as JoseJwk;
use serde_json::{Value, json};
use support::{AUDIENCE, ISSUER, SCOPE, b64d, bearer, configure, one_request, payload, service};
use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::testing::{TestEncryptionKey, TestKey};
use tower_oauth::validate::DecryptionKeys;
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, KeySet, KeyStore, ValidationError, Validator};

fn b64e(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RS256 access token every case encrypts, its key set, and the floor's verifier.
struct Signed {
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    rs256: signature::ParsedPublicKey,
    keys: KeySet,
}

fn signed() -> Signed {
    let key = TestKey::generate(Algorithm::RS256);
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": key.kid()}).to_string();
    let token = key.sign_compact(&header, &payload());
    let (signing_input, signature_b64) = token.rsplit_once('.').expect("three segments");
    let jwk = key.public_jwk();
    let component = |name: &str| b64d(jwk[name].as_str().expect("an RSA member"));
    let rs256 = signature::RsaPublicKeyComponents { n: component("n"), e: component("e") }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .expect("rsa key");
    let keys = KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks");
    assert_eq!(keys.len(), 1);
    Signed {
        signing_input: signing_input.as_bytes().to_vec(),
        signature: b64d(signature_b64),
        token: token.clone(),
        rs256,
        keys,
    }
}

/// One key-management algorithm: the nested token and everything that reads it.
struct Case {
    name: &'static str,
    token: String,
    /// josekit's decrypter for the same private key, built outside the timed loop.
    decrypter: Box<dyn JweDecrypter>,
    validator: Validator,
}

fn case(name: &'static str, signed: &Signed) -> Case {
    let key = TestEncryptionKey::generate(name);
    let token = key.encrypt(signed.token.as_bytes(), "A256GCM", Some("JWT"));
    let private_jwks = key.private_jwks();

    // The floor's decrypter: the same private JWK, straight into josekit (without its
    // `kid`, which josekit would insist on matching; the token's is right anyway).
    let document: Value = serde_json::from_str(&private_jwks).expect("jwks");
    let mut map = document["keys"][0].as_object().expect("a JWK").clone();
    map.remove("kid");
    let jwk = JoseJwk::from_map(map).expect("a josekit JWK");
    let decrypter: Box<dyn JweDecrypter> = match name {
        "RSA-OAEP-256" => Box::new(jose_jwe::RSA_OAEP_256.decrypter_from_jwk(&jwk).expect("rsa decrypter")),
        "ECDH-ES+A256KW" => Box::new(jose_jwe::ECDH_ES_A256KW.decrypter_from_jwk(&jwk).expect("ecdh decrypter")),
        other => unreachable!("no case for {other}"),
    };

    let validator = Validator::builder()
        .issuer_with_keys(ISSUER, KeyStore::from_key_set(signed.keys.clone()))
        .audience(AUDIENCE)
        .algorithms([Algorithm::RS256])
        .decryption_keys(DecryptionKeys::from_jwks(private_jwks.as_bytes()).expect("decryption keys"))
        .build()
        .expect("validator");

    let case = Case { name, token, decrypter, validator };
    // Every path accepts the token before anything is timed.
    assert!(floor(&case, signed), "{name}: floor");
    let claims = case.validator.validate_with_current_keys(&case.token).expect("validator accepts");
    assert_eq!(claims.scopes().as_str(), SCOPE);
    case
}

/// josekit decrypt with the pre-built decrypter, then the RS256 verify with the pre-parsed
/// key over the pre-split inner token.
fn floor(case: &Case, signed: &Signed) -> bool {
    let (plaintext, _header) = jose_jwe::deserialize_compact(&case.token, case.decrypter.as_ref()).expect("decrypts");
    black_box(plaintext);
    signed.rs256.verify_sig(&signed.signing_input, &signed.signature).is_ok()
}

fn per_algorithm(c: &mut Criterion, signed: &Signed, cases: &[Case]) {
    for case in cases {
        let mut group = c.benchmark_group(case.name);
        configure(&mut group);
        group.bench_function("floor", |b| b.iter(|| black_box(floor(case, signed))));
        group.bench_function("floor_decrypt_only", |b| {
            b.iter(|| jose_jwe::deserialize_compact(black_box(&case.token), case.decrypter.as_ref()).expect("decrypts"))
        });
        group.bench_function("floor_rs256_verify_only", |b| {
            b.iter(|| black_box(signed.rs256.verify_sig(black_box(&signed.signing_input), &signed.signature).is_ok()))
        });
        group.bench_function("validator", |b| {
            b.iter(|| -> Claims { case.validator.validate_with_current_keys(black_box(&case.token)).expect("valid") })
        });

        let auth = bearer(&case.token);
        let mut uncached = service(BearerAuthLayer::new(case.validator.clone()));
        assert_eq!(one_request(&mut uncached, &auth), StatusCode::OK, "{}: service accepts", case.name);
        group.bench_function("tower_service", |b| b.iter(|| one_request(&mut uncached, black_box(&auth))));

        let mut cached = service(BearerAuthLayer::new(case.validator.clone()).cache(VerifiedTokenCache::default()));
        assert_eq!(one_request(&mut cached, &auth), StatusCode::OK, "{}: cached service accepts", case.name);
        group.bench_function("cached", |b| b.iter(|| one_request(&mut cached, black_box(&auth))));
        group.finish();
    }
}

/// A compact JWE's segments, edited, joined again.
fn edit(token: &str, change: impl FnOnce(&mut Vec<String>)) -> String {
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(segments.len(), 5);
    change(&mut segments);
    segments.join(".")
}

/// The token's protected header with `change` applied (the AEAD then fails, but the
/// refusals measured here come before it).
fn with_header(token: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    edit(token, |segments| {
        let mut header: Value = serde_json::from_slice(&b64d(&segments[0])).expect("a JSON header");
        change(header.as_object_mut().expect("an object"));
        segments[0] = b64e(header.to_string());
    })
}

fn bogus(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("bogus");
    configure(&mut group);
    let mut run = |id: String, validator: &Validator, token: String, expected: ValidationError| {
        assert_eq!(validator.validate_with_current_keys(&token).unwrap_err(), expected, "{id}");
        group.bench_function(id, |b| b.iter(|| validator.validate_with_current_keys(black_box(&token)).unwrap_err()));
    };
    for case in cases {
        // (a) A kid that no configured key has: refused after the header parse.
        let unknown_kid = with_header(&case.token, |h| {
            h.insert("kid".into(), "enc-0000000000000000".into());
        });
        run(format!("{}/a_unknown_kid", case.name), &case.validator, unknown_kid, ValidationError::NoDecryptionKey);
        // (b) The right kid, the encrypted key corrupted (its last bit flipped: for RSA the
        // value stays below the modulus, so the private-key operation runs, and OAEP
        // unpadding fails; for ECDH-ES+A256KW the key agreement runs and the unwrap fails).
        let garbage_key = edit(&case.token, |segments| {
            let mut encrypted_key = b64d(&segments[1]);
            *encrypted_key.last_mut().expect("an encrypted key") ^= 1;
            segments[1] = b64e(encrypted_key);
        });
        run(
            format!("{}/b_garbage_encrypted_key", case.name),
            &case.validator,
            garbage_key,
            ValidationError::DecryptionFailed,
        );
    }
    // (c) Refused by the header pre-checks: `zip`, and PBES2 with a p2c that would take
    // minutes to honour.
    let rsa = &cases[0];
    let zip = with_header(&rsa.token, |h| {
        h.insert("zip".into(), "DEF".into());
    });
    run("c_zip".into(), &rsa.validator, zip, ValidationError::UnsupportedEncryption("compressed payloads are refused"));
    let pbes2 = with_header(&rsa.token, |h| {
        h.insert("alg".into(), "PBES2-HS512+A256KW".into());
        h.insert("p2s".into(), "8Q1SzinasR3xchYz6ZZcHA".into());
        h.insert("p2c".into(), 2_000_000_000u64.into());
    });
    run("c_pbes2".into(), &rsa.validator, pbes2, ValidationError::UnsupportedEncryption("PBES2 is refused"));
    group.finish();
}

fn benches(c: &mut Criterion) {
    let signed = signed();
    let cases = vec![case("RSA-OAEP-256", &signed), case("ECDH-ES+A256KW", &signed)];
    for case in &cases {
        eprintln!("{}: JWE {} bytes around a {}-byte RS256 JWS", case.name, case.token.len(), signed.token.len());
    }
    per_algorithm(c, &signed, &cases);
    bogus(c, &cases);
}

criterion_group!(jwe, benches);
criterion_main!(jwe);
