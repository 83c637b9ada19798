//! Interoperability with an independent IdP: node-oidc-provider (npm `oidc-provider`,
//! pinned in `tests/oidc/package-lock.json`), run by `tests/oidc/idp.mjs` on 127.0.0.1.
//!
//! Real RFC 9068 access tokens from its token endpoint (client_credentials, resource
//! indicators) go through [`BearerAuthLayer`] with the keys found by discovery; a key
//! rotation at the IdP under steady traffic causes no 401.
//!
//! Needs Node.js and `npm ci` in `tests/oidc`: `scripts/test` provisions both.
#![cfg(all(feature = "testing", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;

use crate::support;
use crate::support::api::claims_api;
use support::oidc_idp::{
    API, API_ES256, CLIENT, Error, Idp, REQUEST_TIMEOUT, SPECIAL_CLIENT, TestResult, call, http_client, segment,
};
use tower_oauth::{BearerAuthLayer, TypPolicy, Validator};

fn validator(issuer: &str, audiences: &[&str]) -> Result<Validator, Error> {
    // Discovery only: no JWKS URI given.
    let mut builder = Validator::builder().issuer(issuer).typ(TypPolicy::Rfc9068);
    for audience in audiences {
        builder = builder.audience(*audience);
    }
    Ok(builder.build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_issues_rfc9068_jwt_access_tokens() -> TestResult {
    let idp = Idp::start().await?;

    let token = idp.token(CLIENT, API, "read").await?;
    let header = segment(&token, 0);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "RS256", "{header}");
    assert!(header["kid"].is_string(), "{header}");
    let claims = segment(&token, 1);
    assert_eq!(claims["iss"], idp.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], API, "a single audience, as a string: {claims}");
    assert_eq!(claims["client_id"], CLIENT.0, "{claims}");
    assert_eq!(claims["sub"], CLIENT.0, "client_credentials: sub is the client: {claims}");
    assert_eq!(claims["scope"], "read", "{claims}");
    for claim in ["jti", "iat", "exp"] {
        assert!(!claims[claim].is_null(), "RFC 9068 §2.2 requires {claim}: {claims}");
    }

    let token = idp.token(CLIENT, API_ES256, "read write").await?;
    let header = segment(&token, 0);
    assert_eq!((&header["typ"], &header["alg"]), (&"at+jwt".into(), &"ES256".into()), "{header}");
    assert_eq!(segment(&token, 1)["aud"], API_ES256);

    // The client whose id and secret only authenticate when form-urlencoded first.
    let token = idp.token(SPECIAL_CLIENT, API, "read admin").await?;
    let claims = segment(&token, 1);
    assert_eq!((&claims["client_id"], &claims["scope"]), (&SPECIAL_CLIENT.0.into(), &"read admin".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_layer_accepts_oidc_provider_tokens_found_by_discovery() -> TestResult {
    let idp = Idp::start().await?;
    let url = claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API])?)).await;
    let http = http_client();

    let token = idp.token(CLIENT, API, "read").await?;
    let reply = call(&http, &url, Some(&token)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!(reply.json["client_id"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["sub"], CLIENT.0, "{}", reply.json);
    assert_eq!(reply.json["scope"], "read", "{}", reply.json);
    assert_eq!(reply.json["iss"], idp.issuer.as_str(), "{}", reply.json);

    let token = idp.token(SPECIAL_CLIENT, API, "read write").await?;
    let reply = call(&http, &url, Some(&token)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    assert_eq!((&reply.json["client_id"], &reply.json["scope"]), (&SPECIAL_CLIENT.0.into(), &"read write".into()));

    // No token: a bare challenge.
    let reply = call(&http, &url, None).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenge = reply.challenge.ok_or("no WWW-Authenticate")?;
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="), "no error code without credentials: {challenge}");

    // A flipped signature bit, and a payload with a scope the IdP never granted.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let forged_payload = {
        let mut claims = segment(&token, 1);
        claims["scope"] = "read write admin".into();
        let parts: Vec<&str> = token.split('.').collect();
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2])
    };
    for bad in [String::from_utf8(tampered)?, forged_payload] {
        let reply = call(&http, &url, Some(&bad)).await?;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let challenge = reply.challenge.ok_or("no WWW-Authenticate")?;
        assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");
    }

    // A real token for another resource server: wrong audience.
    let other = idp.token(CLIENT, API_ES256, "read").await?;
    let reply = call(&http, &url, Some(&other)).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.challenge.is_some_and(|c| c.contains(r#"error="invalid_token""#)));

    let stats = idp.stats().await?;
    eprintln!("IdP requests: {stats}");
    assert_eq!(stats["discovery"].as_u64(), Some(2), "the test's and the validator's discovery: {stats}");
    assert_eq!(stats["jwks"].as_u64(), Some(1), "one JWKS fetch serves every token: {stats}");
    Ok(())
}

/// What one request of the steady stream saw.
struct Outcome {
    kid: String,
    status: StatusCode,
    challenge: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_at_oidc_provider_causes_no_401() -> TestResult {
    const WORKERS: usize = 4;
    const BEFORE: usize = 20;
    const AFTER_WITH_NEW_KID: usize = 20;
    /// A worker's hard cap, so the stream ends whatever happens.
    const MAX_PER_WORKER: usize = 500;

    let idp = Arc::new(Idp::start().await?);
    let url = claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API])?).verbose_errors(true)).await;
    let http = http_client();
    let old_kid = segment(&idp.token(CLIENT, API, "read").await?, 0)["kid"].as_str().ok_or("no kid")?.to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Outcome, String>>();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (idp, http, url, stop, tx) = (idp.clone(), http.clone(), url.clone(), stop.clone(), tx.clone());
        workers.spawn(async move {
            for _ in 0..MAX_PER_WORKER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A fresh token each time: after the rotation it carries the new kid.
                let outcome = async {
                    let token = idp.token(CLIENT, API, "read").await?;
                    let kid = segment(&token, 0)["kid"].as_str().unwrap_or_default().to_owned();
                    let reply = call(&http, &url, Some(&token)).await?;
                    Ok::<_, Error>(Outcome { kid, status: reply.status, challenge: reply.challenge })
                }
                .await;
                if tx.send(outcome.map_err(|e| e.to_string())).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut rotated = None;
    let mut pre_rotation_token = None;
    let stream = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(outcome) = rx.recv().await {
            outcomes.push(outcome?);
            if rotated.is_none() && outcomes.len() >= BEFORE {
                // A token signed with the old key, to replay after the rotation.
                pre_rotation_token = Some(idp.token(CLIENT, API, "read").await?);
                let before = idp.stats().await?;
                let answer = idp.rotate().await?;
                let new_kid = answer["kids"]["RS256"].as_str().ok_or("no new kid")?.to_owned();
                eprintln!("rotated after {} requests ({:?}): {answer}", outcomes.len(), started.elapsed());
                rotated = Some((outcomes.len(), new_kid, before));
            }
            if let Some((_, new_kid, _)) = &rotated
                && outcomes.iter().filter(|o| o.kid == *new_kid).count() >= AFTER_WITH_NEW_KID
            {
                break;
            }
        }
        Ok::<_, Error>(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    // Workers finish the request in hand (each bounded by REQUEST_TIMEOUT).
    tokio::time::timeout(REQUEST_TIMEOUT * 3, async { while workers.join_next().await.is_some() {} })
        .await
        .map_err(|_| "workers did not stop")?;
    while let Ok(outcome) = rx.try_recv() {
        outcomes.push(outcome?);
    }
    stream.map_err(|_| format!("the request stream timed out after {} requests", outcomes.len()))??;

    let (rotated_at, new_kid, before) = rotated.ok_or("never rotated")?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != StatusCode::OK)
        .map(|o| format!("{} with kid {}: {:?}", o.status, o.kid, o.challenge))
        .collect();
    let with_new_kid = outcomes.iter().filter(|o| o.kid == new_kid).count();
    let after = idp.stats().await?;
    eprintln!(
        "{} requests in {:?}: {} before the rotation, {} with the new kid {new_kid}, {} failed; IdP before {before}, after {after}",
        outcomes.len(),
        started.elapsed(),
        rotated_at,
        with_new_kid,
        failed.len(),
    );
    assert!(failed.is_empty(), "requests failed across the rotation: {failed:#?}");
    assert_ne!(old_kid, new_kid);
    assert!(outcomes[..rotated_at].iter().all(|o| o.kid == old_kid), "before the rotation, only {old_kid}");
    assert!(outcomes.iter().all(|o| o.kid == old_kid || o.kid == new_kid), "only the two kids");
    assert!(with_new_kid >= AFTER_WITH_NEW_KID);

    // The new kid cost exactly one JWKS fetch (on demand, single-flight), and no discovery.
    let jwks_fetches = after["jwks"].as_u64().unwrap_or(0) - before["jwks"].as_u64().unwrap_or(0);
    assert_eq!(jwks_fetches, 1, "JWKS fetches for the new kid: IdP before {before}, after {after}");
    assert_eq!(after["discovery"], before["discovery"], "the JWKS URI is remembered");

    // The old key is still published, so a token it signed still passes.
    let reply = call(&http, &url, Some(&pre_rotation_token.ok_or("no pre-rotation token")?)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_pass_the_same_layer() -> TestResult {
    let idp = Idp::start().await?;
    let url = claims_api(BearerAuthLayer::new(validator(&idp.issuer, &[API, API_ES256])?)).await;
    let http = http_client();

    for (resource, alg) in [(API_ES256, "ES256"), (API, "RS256")] {
        let token = idp.token(CLIENT, resource, "write").await?;
        assert_eq!(segment(&token, 0)["alg"], alg);
        let reply = call(&http, &url, Some(&token)).await?;
        assert_eq!(reply.status, StatusCode::OK, "{alg}: {:?}", reply.challenge);
        assert_eq!(reply.json["aud"], resource, "{}", reply.json);
        assert_eq!(reply.json["scope"], "write", "{}", reply.json);
    }

    // ES256 across a rotation too: the new EC key is found on demand.
    let rotated = idp.rotate().await?;
    let token = idp.token(CLIENT, API_ES256, "read").await?;
    assert_eq!(segment(&token, 0)["kid"], rotated["kids"]["ES256"]);
    let reply = call(&http, &url, Some(&token)).await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.challenge);
    Ok(())
}
