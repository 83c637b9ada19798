//! Validation benchmarks: the crypto floor, `jsonwebtoken`, the `Validator` and the
//! Tower service side by side per algorithm, the verified-token cache, the claims fast
//! path against serde, and 1 vs 2 threads sharing one `Validator`.
//!
//! Tokens are signed locally with `TestKey`; nothing touches the network. Run with
//! `cargo bench --bench validate`.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use aws_lc_rs::{hmac, signature};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::StatusCode;
use serde_json::{Value, json};
use support::{AUDIENCE, ISSUER, b64d, bearer, configure, one_request, payload, service};
use tower_oauth::bearer::VerifiedTokenCache;
use tower_oauth::testing::TestKey;
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, Jwk, KeySet, KeyStore, Secret, Validator};

/// The crypto backend's verify with a pre-parsed key: the lower bound.
enum Floor {
    Public(signature::ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

impl Floor {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Floor::Public(key) => key.verify_sig(message, signature).is_ok(),
            Floor::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }
}

/// One algorithm's token and every verifier of it, built outside the timed loops.
struct Case {
    name: &'static str,
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    floor: Floor,
    jwt_key: jsonwebtoken::DecodingKey,
    jwt_validation: jsonwebtoken::Validation,
    validator: Validator,
}

fn jwk_str<'a>(jwk: &'a Value, name: &str) -> &'a str {
    jwk[name].as_str().unwrap_or_else(|| panic!("jwk member {name}"))
}

fn case(name: &'static str, alg: Algorithm, jwt_alg: jsonwebtoken::Algorithm) -> Case {
    let key = TestKey::generate(alg);
    let kid = key.kid().to_owned();
    let header = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid}).to_string();
    let token = key.sign_compact(&header, &payload());
    let (signing_input, signature_b64) = token.rsplit_once('.').expect("three segments");
    let signature = b64d(signature_b64);
    let jwk = key.public_jwk();

    let (floor, jwt_key, set) = match alg {
        Algorithm::HS256 => {
            let secret = key.hmac_secret().expect("hmac secret");
            let floor = Floor::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret)));
            let jwt_key = jsonwebtoken::DecodingKey::from_secret(secret);
            let set = KeySet::from_keys([Jwk::hmac(alg, &Secret::new(secret), Some(&kid)).expect("hmac jwk")]);
            (floor, jwt_key, set)
        }
        _ => {
            let (floor, jwt_key) = match alg {
                Algorithm::RS256 => {
                    let (n, e) = (jwk_str(&jwk, "n"), jwk_str(&jwk, "e"));
                    let components = signature::RsaPublicKeyComponents { n: b64d(n), e: b64d(e) };
                    let parsed =
                        components.to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256).expect("rsa key");
                    (parsed, jsonwebtoken::DecodingKey::from_rsa_components(n, e).expect("jwt rsa key"))
                }
                Algorithm::ES256 => {
                    let (x, y) = (jwk_str(&jwk, "x"), jwk_str(&jwk, "y"));
                    let mut point = vec![0x04];
                    point.extend(b64d(x));
                    point.extend(b64d(y));
                    let parsed =
                        signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).expect("ec key");
                    (parsed, jsonwebtoken::DecodingKey::from_ec_components(x, y).expect("jwt ec key"))
                }
                Algorithm::EdDSA => {
                    let x = jwk_str(&jwk, "x");
                    let parsed = signature::ParsedPublicKey::new(&signature::ED25519, b64d(x)).expect("ed key");
                    (parsed, jsonwebtoken::DecodingKey::from_ed_components(x).expect("jwt ed key"))
                }
                _ => unreachable!("no case for {alg}"),
            };
            let set = KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks");
            (Floor::Public(floor), jwt_key, set)
        }
    };
    assert_eq!(set.len(), 1, "{name}: the key set holds the key");

    let validator = Validator::builder()
        .issuer_with_keys(ISSUER, KeyStore::from_key_set(set))
        .audience(AUDIENCE)
        .algorithms([alg])
        .build()
        .expect("validator");

    let mut jwt_validation = jsonwebtoken::Validation::new(jwt_alg);
    jwt_validation.set_issuer(&[ISSUER]);
    jwt_validation.set_audience(&[AUDIENCE]);

    let case = Case {
        name,
        signing_input: signing_input.as_bytes().to_vec(),
        signature,
        floor,
        jwt_key,
        jwt_validation,
        validator,
        token,
    };
    // Every path accepts the token before anything is timed.
    assert!(case.floor.verify(&case.signing_input, &case.signature), "{name}: floor");
    jsonwebtoken::decode::<Value>(&case.token, &case.jwt_key, &case.jwt_validation).expect("jsonwebtoken accepts");
    let claims = case.validator.validate_with_current_keys(&case.token).expect("validator accepts");
    assert_eq!(claims.scopes().as_str(), "orders:read orders:write profile");
    case
}

fn cases() -> Vec<Case> {
    let cases = vec![
        case("RS256", Algorithm::RS256, jsonwebtoken::Algorithm::RS256),
        case("ES256", Algorithm::ES256, jsonwebtoken::Algorithm::ES256),
        case("EdDSA", Algorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA),
        case("HS256", Algorithm::HS256, jsonwebtoken::Algorithm::HS256),
    ];
    for c in &cases {
        eprintln!("{}: token {} bytes, payload {} bytes", c.name, c.token.len(), payload().len());
    }
    cases
}

fn per_algorithm(c: &mut Criterion, cases: &[Case]) {
    for case in cases {
        let mut group = c.benchmark_group(case.name);
        configure(&mut group);

        group.bench_function("floor", |b| {
            b.iter(|| black_box(case.floor.verify(black_box(&case.signing_input), black_box(&case.signature))))
        });
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Value>(black_box(&case.token), &case.jwt_key, &case.jwt_validation)
                    .expect("valid")
            })
        });
        group.bench_function("validator", |b| {
            b.iter(|| -> Claims { case.validator.validate_with_current_keys(black_box(&case.token)).expect("valid") })
        });

        let mut svc = service(BearerAuthLayer::new(case.validator.clone()));
        let auth = bearer(&case.token);
        assert_eq!(one_request(&mut svc, &auth), StatusCode::OK, "{}: service accepts", case.name);
        group.bench_function("tower_service", |b| b.iter(|| one_request(&mut svc, black_box(&auth))));
        group.finish();
    }
}

/// `Claims` through the claims fast path against `Claims` read by serde.
///
/// The validator builds its own [`Claims`] from the pass the policy already made over
/// the payload; any other type goes through serde. `ViaSerde` is the same claims behind
/// a transparent wrapper, so it takes the serde path: a second parse of the payload and
/// two copies of it. Kept only while `validator` is clearly the faster of the two.
fn claims(c: &mut Criterion, hs256: &Case) {
    #[derive(serde::Deserialize)]
    #[serde(transparent)]
    struct ViaSerde(Claims);

    let keys = hs256.validator.issuers().key_store(ISSUER).expect("a key store");
    let via_serde = Validator::builder()
        .issuer_with_keys(ISSUER, keys)
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .claims::<ViaSerde>()
        .build()
        .expect("validator");
    let ViaSerde(claims) = via_serde.validate_with_current_keys(&hs256.token).expect("valid");
    assert_eq!(claims.scopes().as_str(), "orders:read orders:write profile");

    let mut group = c.benchmark_group("claims");
    configure(&mut group);
    group.bench_function("HS256/fast_path", |b| {
        b.iter(|| -> Claims { hs256.validator.validate_with_current_keys(black_box(&hs256.token)).expect("valid") })
    });
    group.bench_function("HS256/serde", |b| {
        b.iter(|| -> ViaSerde { via_serde.validate_with_current_keys(black_box(&hs256.token)).expect("valid") })
    });
    group.finish();
}

fn cache(c: &mut Criterion, rs256: &Case) {
    let mut group = c.benchmark_group("cache");
    configure(&mut group);
    let auth = bearer(&rs256.token);

    let mut uncached = service(BearerAuthLayer::new(rs256.validator.clone()));
    assert_eq!(one_request(&mut uncached, &auth), StatusCode::OK);
    group.bench_function("RS256/uncached", |b| b.iter(|| one_request(&mut uncached, black_box(&auth))));

    let mut cached = service(BearerAuthLayer::new(rs256.validator.clone()).cache(VerifiedTokenCache::default()));
    assert_eq!(one_request(&mut cached, &auth), StatusCode::OK);
    group.bench_function("RS256/cached", |b| b.iter(|| one_request(&mut cached, black_box(&auth))));
    group.finish();
}

/// Runs `iters` operations split over `threads` threads, each with its own clone of
/// `state`, and returns the wall time from the common start to the last finish
/// (thread start-up excluded), so the figure is time per operation of the whole
/// machine: half with two threads if nothing shared serialises them.
fn parallel<T: Clone + Send>(iters: u64, threads: u64, state: &T, op: impl Fn(&mut T) + Sync) -> Duration {
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = iters / threads + u64::from(t < iters % threads);
                let mut state = state.clone();
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..n {
                        op(&mut state);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("one thread");
    let end = spans.iter().map(|s| s.1).max().expect("one thread");
    end - start
}

fn throughput(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("throughput");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    for case in cases.iter().filter(|c| matches!(c.name, "RS256" | "ES256")) {
        // The crypto floor alone, for comparison: does the backend itself scale?
        for threads in [1u64, 2] {
            let id = format!("{}/floor/{threads}_thread{}", case.name, if threads > 1 { "s" } else { "" });
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    parallel(iters, threads, &(), |()| {
                        black_box(case.floor.verify(black_box(&case.signing_input), black_box(&case.signature)));
                    })
                })
            });
        }
        for threads in [1u64, 2] {
            let id = format!("{}/validator/{threads}_thread{}", case.name, if threads > 1 { "s" } else { "" });
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    parallel(iters, threads, &case.validator, |v| {
                        let claims: Claims = v.validate_with_current_keys(black_box(&case.token)).expect("valid");
                        black_box(claims);
                    })
                })
            });
        }
    }
    // The cached service: every thread hits the same entry.
    if let Some(rs256) = cases.iter().find(|c| c.name == "RS256") {
        let auth = bearer(&rs256.token);
        let mut svc = service(BearerAuthLayer::new(rs256.validator.clone()).cache(VerifiedTokenCache::default()));
        assert_eq!(one_request(&mut svc, &auth), StatusCode::OK);
        for threads in [1u64, 2] {
            let id = format!("RS256/cached_service/{threads}_thread{}", if threads > 1 { "s" } else { "" });
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    parallel(iters, threads, &svc, |svc| {
                        black_box(one_request(svc, black_box(&auth)));
                    })
                })
            });
        }
    }
    group.finish();
}

/// DPoP (RFC 9449): an ES256 token bound to an ES256 proof key, through the Tower
/// service, against its floor: the two signature verifications with pre-parsed keys.
/// Each timed request carries a fresh proof (made outside the timing), as the replay
/// check demands.
fn dpop(c: &mut Criterion) {
    use criterion::BatchSize;
    use tower_oauth::DpopKey;
    use tower_oauth::validate::dpop::{DpopReplayCache, DpopVerifier};

    let token_key = TestKey::generate(Algorithm::ES256);
    let proof_key = DpopKey::generate().expect("dpop key");
    let mut claims: Value = serde_json::from_str(&payload()).expect("payload");
    claims["cnf"] = json!({"jkt": proof_key.thumbprint()});
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": token_key.kid()}).to_string();
    let token = token_key.sign_compact(&header, &claims.to_string());
    let set = KeySet::from_jwks(json!({ "keys": [token_key.public_jwk()] }).to_string().as_bytes()).expect("jwks");
    let validator = Validator::builder()
        .issuer_with_keys(ISSUER, KeyStore::from_key_set(set))
        .audience(AUDIENCE)
        .algorithms([Algorithm::ES256])
        .build()
        .expect("validator");
    let verifier = DpopVerifier::builder("https://api.example.com")
        .replay_cache(DpopReplayCache::in_memory(20_000_000))
        .build()
        .expect("dpop verifier");
    let mut svc = service(BearerAuthLayer::new(validator).dpop(verifier));
    let url: url::Url = "https://api.example.com/orders".parse().expect("url");
    let fresh = || proof_key.proof(&http::Method::GET, &url, Some(&token), None).expect("proof");
    let authorization = http::HeaderValue::from_str(&format!("DPoP {token}")).expect("header");
    let request = |proof: String| {
        let mut request = http::Request::get("/orders").body(()).expect("request");
        request.headers_mut().insert(http::header::AUTHORIZATION, authorization.clone());
        request.headers_mut().insert("dpop", http::HeaderValue::from_str(&proof).expect("proof header"));
        request
    };

    // The floor: both signatures, verified with keys parsed beforehand.
    let ec_key = |jwk: &Value| {
        let mut point = vec![0x04];
        point.extend(b64d(jwk_str(jwk, "x")));
        point.extend(b64d(jwk_str(jwk, "y")));
        signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).expect("ec key")
    };
    let token_floor = ec_key(&token_key.public_jwk());
    let proof_floor = ec_key(&serde_json::from_str(proof_key.public_jwk()).expect("jwk"));
    let proof = fresh();
    let split = |jws: &str| {
        let (input, signature) = jws.rsplit_once('.').expect("three segments");
        (input.as_bytes().to_vec(), b64d(signature))
    };
    let ((token_input, token_sig), (proof_input, proof_sig)) = (split(&token), split(&proof));
    assert_eq!(support::one_call(&mut svc, request(fresh())), StatusCode::OK, "the service accepts the proof");
    assert_eq!(support::one_call(&mut svc, request(proof.clone())), StatusCode::OK);
    assert_eq!(support::one_call(&mut svc, request(proof)), StatusCode::UNAUTHORIZED, "a replay is refused");

    let mut group = c.benchmark_group("dpop");
    configure(&mut group);
    group.bench_function("ES256/floor", |b| {
        b.iter(|| {
            token_floor.verify_sig(black_box(&token_input), black_box(&token_sig)).is_ok()
                && proof_floor.verify_sig(black_box(&proof_input), black_box(&proof_sig)).is_ok()
        })
    });
    group.bench_function("ES256/tower_service", |b| {
        b.iter_batched(|| request(fresh()), |request| support::one_call(&mut svc, request), BatchSize::SmallInput)
    });
    group.finish();
}

/// The audience check against a resource identifier (`ValidatorBuilder::resource`): an
/// `aud` spelled as configured takes the exact comparison; an equivalent spelling
/// (scheme and host case, the default port) is normalised first. The plain audience is
/// the baseline.
fn resource(c: &mut Criterion) {
    const RESOURCE: &str = "https://api.example.com/mcp";
    let key = TestKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef0123456789abcdef").with_kid("k1");
    let secret = key.hmac_secret().expect("hmac secret");
    let keys = || {
        let jwk = Jwk::hmac(Algorithm::HS256, &Secret::new(secret), Some("k1")).expect("hmac jwk");
        KeyStore::from_key_set(KeySet::from_keys([jwk]))
    };
    let build = |builder: tower_oauth::ValidatorBuilder| {
        builder.issuer_with_keys(ISSUER, keys()).algorithms([Algorithm::HS256]).build().expect("validator")
    };
    let plain = build(Validator::builder().audience(AUDIENCE));
    let by_resource = build(Validator::builder().resource(RESOURCE));
    let token = |aud: &str| {
        let mut claims: Value = serde_json::from_str(&payload()).expect("payload");
        claims["aud"] = json!([aud, "account"]);
        key.sign_compact(r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#, &claims.to_string())
    };
    let (baseline, exact, equivalent) = (token(AUDIENCE), token(RESOURCE), token("HTTPS://API.Example.COM:443/mcp"));
    plain.validate_with_current_keys(&baseline).expect("valid");
    by_resource.validate_with_current_keys(&exact).expect("valid");
    by_resource.validate_with_current_keys(&equivalent).expect("valid");

    let mut group = c.benchmark_group("resource");
    configure(&mut group);
    group.bench_function("HS256/audience", |b| {
        b.iter(|| -> Claims { plain.validate_with_current_keys(black_box(&baseline)).expect("valid") })
    });
    group.bench_function("HS256/resource_exact", |b| {
        b.iter(|| -> Claims { by_resource.validate_with_current_keys(black_box(&exact)).expect("valid") })
    });
    group.bench_function("HS256/resource_normalised", |b| {
        b.iter(|| -> Claims { by_resource.validate_with_current_keys(black_box(&equivalent)).expect("valid") })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let cases = cases();
    dpop(c);
    per_algorithm(c, &cases);
    cache(c, &cases[0]);
    claims(c, &cases[3]);
    resource(c);
    throughput(c, &cases);
}

criterion_group!(validate, benches);
criterion_main!(validate);
