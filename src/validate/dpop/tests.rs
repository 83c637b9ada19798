//! Every check of RFC 9449 §4.3 with a case that fails without it. Proofs are made here
//! with aws-lc-rs directly, so that a malformed one can be made too; the interop tests
//! use independent clients.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::*;
use crate::Jwk;

const TOKEN: &str = "the-access-token";
const NOW: i64 = 1_800_000_000;

struct Signer {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl Signer {
    fn new() -> Signer {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])});
        Signer { pair, jwk }
    }

    fn thumbprint(&self) -> [u8; 32] {
        *Jwk::from_json(self.jwk.to_string().as_bytes()).unwrap().thumbprint()
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    fn claims(jti: &str) -> Value {
        json!({"jti": jti, "htm": "GET", "htu": "https://api.example.com/me", "iat": NOW, "ath": ath(TOKEN)})
    }

    fn proof(&self, jti: &str) -> String {
        self.sign(&self.header(), &Signer::claims(jti))
    }
}

fn ath(token: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

fn verifier() -> DpopVerifier {
    DpopVerifier::builder("https://API.example.com:443/").build().unwrap()
}

fn facts(path: &str) -> RequestFacts<'_> {
    RequestFacts { method: "GET", path, access_token: Some(TOKEN), now: NOW }
}

fn check(verifier: &DpopVerifier, proof: &str) -> Result<CheckedProof, DpopError> {
    verifier.check(proof.as_bytes(), &facts("/me"))
}

/// The proof with one claim changed (or removed, with `Value::Null`).
fn with_claim(signer: &Signer, name: &str, value: Value) -> String {
    let mut claims = Signer::claims("j");
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(name);
    } else {
        claims[name] = value;
    }
    signer.sign(&signer.header(), &claims)
}

fn with_header(signer: &Signer, name: &str, value: Value) -> String {
    let mut header = signer.header();
    if value.is_null() {
        header.as_object_mut().unwrap().remove(name);
    } else {
        header[name] = value;
    }
    signer.sign(&header, &Signer::claims("j"))
}

#[test]
fn a_good_proof_gives_its_keys_thumbprint_and_a_replay_key() {
    let signer = Signer::new();
    let checked = check(&verifier(), &signer.proof("j1")).unwrap();
    assert_eq!(checked.thumbprint, signer.thumbprint());
    assert_eq!(checked.expires_at, NOW + 60 + 5 + 1);
    let other = check(&verifier(), &signer.proof("j2")).unwrap();
    assert_ne!(checked.replay_key, other.replay_key, "each jti its own key");
    // The same jti from another key is another proof.
    assert_ne!(check(&verifier(), &Signer::new().proof("j1")).unwrap().replay_key, checked.replay_key);
}

#[test]
fn the_header_must_be_a_dpop_jwt_with_an_allowed_asymmetric_alg_and_a_public_key() {
    let signer = Signer::new();
    let v = verifier();
    assert_eq!(check(&v, &with_header(&signer, "typ", json!("JWT"))).unwrap_err(), DpopError::InvalidType);
    assert_eq!(check(&v, &with_header(&signer, "typ", Value::Null)).unwrap_err(), DpopError::InvalidType);
    assert!(check(&v, &with_header(&signer, "typ", json!("DPoP+JWT"))).is_ok(), "media types ignore case");
    assert_eq!(check(&v, &with_header(&signer, "alg", json!("none"))).unwrap_err(), DpopError::AlgorithmNotAllowed);
    assert_eq!(check(&v, &with_header(&signer, "alg", json!("HS256"))).unwrap_err(), DpopError::AlgorithmNotAllowed);
    let only_eddsa = DpopVerifier::builder("https://api.example.com").algorithms([Algorithm::EdDSA]).build().unwrap();
    assert_eq!(check(&only_eddsa, &signer.proof("j")).unwrap_err(), DpopError::AlgorithmNotAllowed);
    assert!(matches!(check(&v, &with_header(&signer, "jwk", Value::Null)), Err(DpopError::Malformed(_))));
    assert!(matches!(check(&v, &with_header(&signer, "crit", json!(["exp"]))), Err(DpopError::Malformed(_))));
    // A private key in the header: refused, whatever the rest says.
    let mut leaked = signer.jwk.clone();
    leaked["d"] = json!(B64.encode([1u8; 32]));
    assert_eq!(check(&v, &with_header(&signer, "jwk", leaked)).unwrap_err(), DpopError::PrivateKey);
    // A symmetric key is a secret, and no proof of possession.
    let oct = json!({"kty": "oct", "k": B64.encode([7u8; 32])});
    assert_eq!(check(&v, &with_header(&signer, "jwk", oct)).unwrap_err(), DpopError::PrivateKey);
    let unknown = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
    assert!(matches!(check(&v, &with_header(&signer, "jwk", unknown)), Err(DpopError::InvalidKey(_))));
    let rsa_alg = with_header(&signer, "alg", json!("RS256"));
    assert!(matches!(check(&v, &rsa_alg), Err(DpopError::InvalidKey(_))));
}

#[test]
fn an_ed25519_proof_may_name_its_algorithm_eddsa_or_ed25519() {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pair = Ed25519KeyPair::generate().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref())});
    let sign = |alg: &str| {
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(Signer::claims("j").to_string()));
        format!("{input}.{}", B64.encode(pair.sign(input.as_bytes()).as_ref()))
    };
    assert!(check(&verifier(), &sign("EdDSA")).is_ok());
    assert!(check(&verifier(), &sign("Ed25519")).is_ok());
    let only_es256 = DpopVerifier::builder("https://api.example.com").algorithms([Algorithm::ES256]).build().unwrap();
    assert_eq!(check(&only_es256, &sign("Ed25519")).unwrap_err(), DpopError::AlgorithmNotAllowed);
    // The name does not choose the key: an EC key under `Ed25519` is refused.
    let signer = Signer::new();
    assert!(check(&verifier(), &with_header(&signer, "alg", json!("Ed25519"))).is_err());
}

#[test]
fn an_hmac_proof_is_refused_even_when_its_signature_is_right() {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": B64.encode([7u8; 32])}});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(Signer::claims("j").to_string()));
    let proof = format!("{input}.{}", B64.encode(hmac::sign(&key, input.as_bytes())));
    assert_eq!(check(&verifier(), &proof).unwrap_err(), DpopError::AlgorithmNotAllowed);
}

#[test]
fn the_signature_must_be_the_keys() {
    let (signer, other) = (Signer::new(), Signer::new());
    let mut header = signer.header();
    header["jwk"] = other.jwk.clone();
    // Signed by `signer`, claiming `other`'s key.
    let forged = signer.sign(&header, &Signer::claims("j"));
    assert_eq!(check(&verifier(), &forged).unwrap_err(), DpopError::InvalidSignature);
    let proof = signer.proof("j");
    let (input, _) = proof.rsplit_once('.').unwrap();
    let tampered = format!("{input}.{}", B64.encode([0u8; 64]));
    assert_eq!(check(&verifier(), &tampered).unwrap_err(), DpopError::InvalidSignature);
}

#[test]
fn the_proof_must_be_for_this_method_and_url() {
    let signer = Signer::new();
    let v = verifier();
    assert_eq!(check(&v, &with_claim(&signer, "htm", json!("POST"))).unwrap_err(), DpopError::MethodMismatch);
    assert_eq!(check(&v, &with_claim(&signer, "htm", json!("get"))).unwrap_err(), DpopError::MethodMismatch);
    for wrong in ["https://api.example.com/other", "http://api.example.com/me", "https://evil.example/me", "me"] {
        assert_eq!(
            check(&v, &with_claim(&signer, "htu", json!(wrong))).unwrap_err(),
            DpopError::UrlMismatch,
            "{wrong}"
        );
    }
    // RFC 3986 §6 equivalents, and the query and fragment ignored.
    for same in
        ["https://API.EXAMPLE.COM:443/me", "https://api.example.com/%6De?x=1#y", "https://api.example.com/a/../me"]
    {
        assert!(check(&v, &with_claim(&signer, "htu", json!(same))).is_ok(), "{same}");
    }
    assert_eq!(
        v.check(signer.proof("j").as_bytes(), &facts("/other")).unwrap_err(),
        DpopError::UrlMismatch,
        "the request's path counts"
    );
    for name in ["htm", "htu", "jti", "iat", "ath"] {
        assert_eq!(check(&v, &with_claim(&signer, name, Value::Null)).unwrap_err(), DpopError::MissingClaim(name));
    }
    assert_eq!(check(&v, &with_claim(&signer, "jti", json!(""))).unwrap_err(), DpopError::MissingClaim("jti"));
    assert!(matches!(check(&v, &with_claim(&signer, "htu", json!(5))), Err(DpopError::Malformed(_))));
}

#[test]
fn iat_must_fall_in_the_window() {
    let signer = Signer::new();
    let v = verifier();
    for (iat, ok) in [(NOW - 65, true), (NOW - 66, false), (NOW + 5, true), (NOW + 6, false)] {
        let result = check(&v, &with_claim(&signer, "iat", json!(iat)));
        assert_eq!(result.is_ok(), ok, "iat {}", iat - NOW);
    }
    assert_eq!(check(&v, &with_claim(&signer, "iat", json!(NOW - 3600))).unwrap_err(), DpopError::Stale);
    assert_eq!(check(&v, &with_claim(&signer, "iat", json!(NOW + 3600))).unwrap_err(), DpopError::IssuedInFuture);
    assert!(
        check(&v, &with_claim(&signer, "iat", json!(NOW as f64 + 0.5))).is_ok(),
        "a NumericDate may have a fraction"
    );
}

#[test]
fn ath_must_hash_the_token_it_came_with() {
    let signer = Signer::new();
    let v = verifier();
    assert_eq!(
        check(&v, &with_claim(&signer, "ath", json!(ath("another-token")))).unwrap_err(),
        DpopError::AccessTokenHashMismatch
    );
    assert_eq!(
        check(&v, &with_claim(&signer, "ath", json!("garbage"))).unwrap_err(),
        DpopError::AccessTokenHashMismatch
    );
    let padded = format!("{}=", ath(TOKEN));
    assert_eq!(check(&v, &with_claim(&signer, "ath", json!(padded))).unwrap_err(), DpopError::AccessTokenHashMismatch);
}

#[test]
fn a_proof_for_a_request_without_a_token_must_have_no_ath() {
    let signer = Signer::new();
    let v = verifier();
    let tokenless = RequestFacts { method: "GET", path: "/me", access_token: None, now: NOW };
    let without_ath = with_claim(&signer, "ath", Value::Null);
    assert!(v.check(without_ath.as_bytes(), &tokenless).is_ok());
    assert_eq!(
        v.check(signer.proof("j").as_bytes(), &tokenless).unwrap_err(),
        DpopError::AccessTokenHashMismatch,
        "a proof that names a token is not one for a request without"
    );
    // And a request with a token still needs `ath`.
    assert_eq!(check(&v, &without_ath).unwrap_err(), DpopError::MissingClaim("ath"));
}

#[test]
fn a_required_nonce_must_be_current() {
    let signer = Signer::new();
    let v = DpopVerifier::builder("https://api.example.com")
        .require_nonce()
        .nonce_period(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(check(&v, &signer.proof("j")).unwrap_err(), DpopError::UseNonce);
    let nonce = v.nonce(NOW).unwrap();
    assert!(check(&v, &with_claim(&signer, "nonce", json!(nonce))).is_ok());
    let expired = v.nonce(NOW - 150).unwrap();
    assert_eq!(check(&v, &with_claim(&signer, "nonce", json!(expired))).unwrap_err(), DpopError::UseNonce);
    let foreign = DpopVerifier::builder("https://api.example.com").require_nonce().build().unwrap().nonce(NOW).unwrap();
    assert_eq!(check(&v, &with_claim(&signer, "nonce", json!(foreign))).unwrap_err(), DpopError::UseNonce);
    assert_eq!(verifier().nonce(NOW), None, "no nonces unless required");
}

#[test]
fn malformed_and_oversized_proofs_are_typed_errors() {
    let v = verifier();
    for junk in ["", "a", "a.b", "a.b.c.d.e", "!!!.b.c", "e30.e30.", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AA"] {
        assert!(check(&v, junk).is_err(), "{junk}");
    }
    let signer = Signer::new();
    let big = with_claim(&signer, "pad", json!("x".repeat(MAX_PROOF_SIZE)));
    assert_eq!(check(&v, &big).unwrap_err(), DpopError::TooLarge);
    // Duplicate members are refused, not guessed at.
    let header = r#"{"typ":"dpop+jwt","alg":"ES256","alg":"ES256"}"#;
    let dup = format!("{}.{}.AA", B64.encode(header), B64.encode("{}"));
    assert!(matches!(check(&v, &dup), Err(DpopError::Malformed(_))));
}

#[test]
fn the_builder_refuses_what_cannot_work() {
    for url in ["not a url", "ftp://h", "https://h/?q=1", "https://h/#f", "/relative"] {
        assert!(matches!(DpopVerifier::builder(url).build(), Err(BuildError::InvalidUrl)), "{url}");
    }
    let symmetric = DpopVerifier::builder("https://h").algorithms([Algorithm::HS256]).build();
    assert!(matches!(symmetric, Err(BuildError::NoAlgorithms)));
    let v = DpopVerifier::builder("https://gw.example.com/api/").build().unwrap();
    assert_eq!(v.public_url(), "https://gw.example.com/api");
    assert!(v.algs().starts_with("RS256") && !v.algs().contains("HS"));
}

#[test]
fn debug_shows_no_nonce_secret() {
    let secret = crate::Secret::new(b"a-very-secret-nonce-key-32-bytes".to_vec());
    let v = DpopVerifier::builder("https://h").nonce_secret(secret).build().unwrap();
    let debug = format!("{v:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Random edits of a good proof, and of the URLs compared: never a panic, and a
    /// proof that still passes is one the signer's key made.
    #[test]
    fn edited_proofs_never_panic_and_pass_only_with_the_signers_key(
        edits in proptest::collection::vec(
            (proptest::prelude::any::<proptest::sample::Index>(), proptest::sample::select(
                b".-_=+/AZaz09{}\":,\\\x00\xff".to_vec()
            )),
            0..4,
        ),
        htu in "\\PC{0,40}",
    ) {
        thread_local! {
            static SIGNER: Signer = Signer::new();
        }
        SIGNER.with(|signer| {
            let mut proof = signer.proof("j").into_bytes();
            for (at, byte) in &edits {
                let i = at.index(proof.len());
                proof[i] = *byte;
            }
            if let Ok(checked) = verifier().check(&proof, &facts("/me")) {
                proptest::prop_assert_eq!(checked.thumbprint, signer.thumbprint());
            }
            let _ = htu::normalise(&htu);
            let _ = htu::request_url("https://api.example.com", &htu);
            Ok(())
        })?;
    }
}
