//! Writes the seed corpora under `fuzz/corpus/<target>/` (files named `seed-*`).
//!
//! Run with: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`
//!
//! Tokens are minted with the crate's own test key types (`TestKey`,
//! `TestEncryptionKey`) in the shape of the fuzz targets' structured inputs; JWKs and
//! tokens also come from the RFC 7520 and Wycheproof vectors in `tests/vectors/`, and the
//! Keycloak sample token response from its committed seed
//! (`corpus/token_response/seed-keycloak-sample`). Keys other than the fixed HMAC
//! secrets are fresh on every run, so only the HMAC-signed seeds verify inside a target;
//! the others reach as far as the signature check, and the targets' `RESIGN` modes sign
//! the same headers and claims with their own keys.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tower_oauth::Algorithm;
use tower_oauth::testing::TestEncryptionKey;
use tower_oauth_fuzz::encryption::{self, KEY_ALGS};
use tower_oauth_fuzz::{
    AUDIENCE, EXPIRES_AT, ISSUED_AT, ISSUER, NOW, SEP, SIGNING_ALGS, b64, base_claims, base_header, bearer, kid,
    sign_bytes, signing,
};

/// Seeds this big or bigger are skipped: the committed corpora stay small.
const MAX_SEED: usize = 4096;

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn new(target: &str) -> Corpus {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        fs::create_dir_all(&dir).expect("create the corpus directory");
        for entry in fs::read_dir(&dir).expect("read the corpus directory").flatten() {
            if entry.file_name().to_string_lossy().starts_with("seed-") {
                fs::remove_file(entry.path()).expect("remove an old seed");
            }
        }
        Corpus { dir, written: 0 }
    }

    fn add(&mut self, name: &str, parts: &[&[u8]]) {
        let bytes = parts.concat();
        if bytes.len() >= MAX_SEED {
            return;
        }
        fs::write(self.dir.join(format!("seed-{name}")), bytes).expect("write a seed");
        self.written += 1;
    }

    fn done(self) {
        println!("{:>4} seeds in {}", self.written, self.dir.display());
    }
}

/// A file of the conformance vectors in the crate's `tests/vectors/`.
fn vectors(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(path)
}

fn vector(path: &str) -> Value {
    let text = fs::read_to_string(vectors(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// The Keycloak sample token response (a bank's published example), kept as the committed
/// seed `corpus/token_response/seed-keycloak-sample`: a mode byte, then the JSON. Read it
/// before `Corpus::new("token_response")` replaces the seeds.
fn keycloak_response() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/token_response/seed-keycloak-sample");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = String::from_utf8(bytes).expect("the Keycloak seed is UTF-8");
    let start = text.find("{ \"access_token\"").expect("the sample response");
    let end = text.rfind('}').expect("the end of the sample response");
    text[start..=end].to_owned()
}

fn compact_outputs(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(vectors(dir)).expect("a vectors directory").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let value = vector(&format!("{dir}/{name}"));
        if let Some(compact) = value["output"]["compact"].as_str() {
            found.push((name.split('.').next().unwrap_or(&name).to_owned(), compact.to_owned()));
        }
    }
    found
}

/// Up to `max` of the `field` values of Wycheproof tests, spread over the file.
fn wycheproof_tokens(file: &str, field: &str, max: usize) -> Vec<(u64, String)> {
    let value = vector(&format!("wycheproof/{file}"));
    let mut all = Vec::new();
    for group in value["testGroups"].as_array().expect("groups") {
        for test in group["tests"].as_array().expect("tests") {
            if let (Some(id), Some(token)) = (test["tcId"].as_u64(), test[field].as_str()) {
                all.push((id, token.to_owned()));
            }
        }
    }
    let step = all.len().div_ceil(max).max(1);
    all.into_iter().step_by(step).collect()
}

/// The keys (JWKs and JWK Sets) of the Wycheproof files' test groups.
fn wycheproof_keys(file: &str) -> Vec<Value> {
    let value = vector(&format!("wycheproof/{file}"));
    let mut keys = Vec::new();
    for group in value["testGroups"].as_array().expect("groups") {
        for member in ["public", "private"] {
            if group[member].is_object() {
                keys.push(group[member].clone());
            }
        }
    }
    keys
}

fn claims_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims: serde_json::Map<String, Value> = serde_json::from_str(&base_claims()).expect("claims");
    edit(&mut claims);
    Value::Object(claims).to_string()
}

/// Claims that break one rule each (or bend one that must still pass).
fn claim_variants() -> Vec<(&'static str, String)> {
    let now = NOW as i64;
    vec![
        ("expired", claims_with(|c| drop(c.insert("exp".into(), json!(now - 3600))))),
        ("exp-float", claims_with(|c| drop(c.insert("exp".into(), json!(4.1e9))))),
        ("exp-huge", claims_with(|c| drop(c.insert("exp".into(), json!(1e300))))),
        ("exp-string", claims_with(|c| drop(c.insert("exp".into(), json!("4102444800"))))),
        ("exp-missing", claims_with(|c| drop(c.remove("exp")))),
        ("nbf-future", claims_with(|c| drop(c.insert("nbf".into(), json!(now + 3600))))),
        ("iat-future", claims_with(|c| drop(c.insert("iat".into(), json!(now + 3600))))),
        ("aud-string", claims_with(|c| drop(c.insert("aud".into(), json!(AUDIENCE))))),
        ("aud-other", claims_with(|c| drop(c.insert("aud".into(), json!(["account"]))))),
        ("aud-missing", claims_with(|c| drop(c.remove("aud")))),
        ("iss-other", claims_with(|c| drop(c.insert("iss".into(), json!("https://evil.example"))))),
        ("iss-missing", claims_with(|c| drop(c.remove("iss")))),
        ("scp-array", claims_with(|c| drop((c.remove("scope"), c.insert("scp".into(), json!(["read", "write"])))))),
        ("no-client-id", claims_with(|c| drop(c.remove("client_id")))),
        (
            "escaped",
            format!(
                r#"{{"iss":"{}","aud":"https:\/\/api.example.com","exp":{EXPIRES_AT},"sub":"al\u0069ce","scope":"a\tb"}}"#,
                ISSUER.replace('/', "\\/")
            ),
        ),
        (
            "duplicate-iss",
            format!(r#"{{"iss":"{ISSUER}","iss":"https://evil.example","aud":"{AUDIENCE}","exp":{EXPIRES_AT}}}"#),
        ),
        (
            "duplicate-sub",
            format!(
                r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{EXPIRES_AT},"sub":"a","sub":"b","iat":{ISSUED_AT}}}"#
            ),
        ),
        ("not-an-object", format!(r#"["{ISSUER}","{AUDIENCE}",{EXPIRES_AT}]"#)),
    ]
}

fn header_variants(alg: Algorithm) -> Vec<(&'static str, String)> {
    let (name, kid) = (alg.as_str(), kid(alg));
    vec![
        ("typ-jwt", format!(r#"{{"alg":"{name}","typ" : "JWT","kid" : "{kid}"}}"#)),
        ("no-kid", format!(r#"{{"alg":"{name}"}}"#)),
        ("typ-dpop", format!(r#"{{"alg":"{name}","kid":"{kid}","typ":"dpop+jwt"}}"#)),
        ("crit-b64", format!(r#"{{"alg":"{name}","kid":"{kid}","crit":["b64"],"b64":true}}"#)),
        ("crit-exp", format!(r#"{{"alg":"{name}","kid":"{kid}","crit":["exp"],"exp":1}}"#)),
        ("b64-false", format!(r#"{{"alg":"{name}","kid":"{kid}","b64":false}}"#)),
        ("jku", format!(r#"{{"alg":"{name}","kid":"{kid}","jku":"https://evil.example/jwks"}}"#)),
        ("duplicate-alg", format!(r#"{{"alg":"{name}","alg":"none","kid":"{kid}"}}"#)),
        ("kid-of-rs256", format!(r#"{{"alg":"{name}","kid":"fuzz-rs256"}}"#)),
        ("kid-unknown", format!(r#"{{"alg":"{name}","kid":"rotated-in"}}"#)),
    ]
}

fn bearer_seeds() {
    let mut corpus = Corpus::new("bearer");
    let signing = signing();
    let hs256 = &signing.keys[0];
    let valid = signing.tokens[0].as_bytes();
    let keycloak: Value = serde_json::from_str(&keycloak_response()).expect("the Keycloak sample");
    let keycloak_token = keycloak["access_token"].as_str().expect("a token").to_owned();

    // Whole tokens.
    let token = [bearer::TOKEN];
    for (alg, base) in SIGNING_ALGS.iter().zip(&signing.tokens) {
        corpus.add(&format!("token-{}", alg.as_str().to_lowercase()), &[&token, base.as_bytes()]);
    }
    for (name, claims) in claim_variants() {
        let signed = sign_bytes(hs256, base_header(Algorithm::HS256).as_bytes(), claims.as_bytes());
        corpus.add(&format!("token-hs256-{name}"), &[&token, signed.as_bytes()]);
    }
    for (name, header) in header_variants(Algorithm::HS256) {
        let signed = sign_bytes(hs256, header.as_bytes(), base_claims().as_bytes());
        corpus.add(&format!("token-hs256-header-{name}"), &[&token, signed.as_bytes()]);
    }
    let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(base_claims()));
    corpus.add("token-alg-none", &[&token, unsigned.as_bytes()]);
    corpus.add("token-keycloak-sample", &[&token, keycloak_token.as_bytes()]);
    corpus.add("token-opaque", &[&token, b"2YotnFZFEjr1zCsicMWpAA"]);
    corpus.add("token-json-serialization", &[&token, br#"{"payload":"e30","signatures":[]}"#]);
    let expired = sign_bytes(hs256, base_header(Algorithm::HS256).as_bytes(), claim_variants()[0].1.as_bytes());
    corpus.add("token-verbose-expired", &[&[bearer::TOKEN | bearer::VERBOSE], expired.as_bytes()]);
    for (name, compact) in compact_outputs("rfc7520/jws") {
        corpus.add(&format!("token-rfc7520-{name}"), &[&token, compact.as_bytes()]);
    }
    for (name, compact) in compact_outputs("rfc7520/curve25519") {
        corpus.add(&format!("token-rfc8037-{name}"), &[&token, compact.as_bytes()]);
    }
    for (id, jws) in wycheproof_tokens("json_web_signature_test.json", "jws", 12) {
        corpus.add(&format!("token-wycheproof-{id}"), &[&token, jws.as_bytes()]);
    }
    if let Some((_, jwe)) = compact_outputs("rfc7520/jwe").into_iter().next() {
        corpus.add("token-jwe-without-keys", &[&token, jwe.as_bytes()]);
    }

    // Whole header values, with each flag.
    let header = [bearer::HEADER];
    corpus.add("header-valid", &[&header, b"Bearer ", valid]);
    corpus.add("header-lowercase-scheme", &[&header, b"bearer ", valid]);
    corpus.add("header-spaces", &[&header, b"Bearer    ", valid]);
    corpus.add("header-tab", &[&header, b"Bearer\t", valid]);
    corpus.add("header-scheme-only", &[&header, b"Bearer"]);
    corpus.add("header-empty-token", &[&header, b"Bearer "]);
    corpus.add("header-two-credentials", &[&header, b"Bearer a, Bearer b"]);
    corpus.add("header-comma", &[&header, b"Bearer a,b"]);
    corpus.add("header-basic", &[&header, b"Basic Y29wLWNsaWVudC1pZDpjb3AtY2xpZW50LXNlY3JldA=="]);
    corpus.add("header-dpop", &[&header, b"DPoP ", valid]);
    corpus.add("header-obs-text", &[&header, b"Bearer \x80\xfe.abc.def"]);
    corpus.add("header-keycloak", &[&header, b"Bearer ", keycloak_token.as_bytes()]);
    corpus.add("header-grpc", &[&[bearer::HEADER | bearer::GRPC], b"Bearer ", valid]);
    corpus.add("header-grpc-verbose-bad", &[&[bearer::HEADER | bearer::GRPC | bearer::VERBOSE], b"Bearer x.y.z"]);
    corpus.add("header-verbose-bad", &[&[bearer::HEADER | bearer::VERBOSE], b"Bearer x.y.z"]);
    corpus.add("header-cache", &[&[bearer::HEADER | bearer::CACHE], b"Bearer ", valid]);
    let query = [bearer::HEADER | bearer::ALLOW_QUERY];
    corpus.add("query-token", &[&query, &[SEP], b"access_token=", valid]);
    corpus.add("query-and-header", &[&query, b"Bearer ", valid, &[SEP], b"access_token=", valid]);
    corpus.add("query-twice", &[&query, &[SEP], b"access_token=a&access_token=b"]);
    corpus.add("query-encoded", &[&query, &[SEP], b"x=1&access_token=a%2Eb%2Ec"]);
    corpus.add("query-empty", &[&query, &[SEP], b"access_token="]);

    // A segment of a real token replaced; +4 base64url-encodes the replacement.
    let splice = |pick: usize, segment: u8| [bearer::SPLICE, pick as u8, segment];
    corpus.add("splice-header-none", &[&splice(0, 4), br#"{"alg":"none","typ":"JWT"}"#]);
    corpus.add("splice-header-confusion", &[&splice(5, 4), br#"{"alg":"HS256","kid":"fuzz-rs256"}"#]);
    corpus.add("splice-payload", &[&splice(1, 5), claim_variants()[10].1.as_bytes()]);
    corpus.add("splice-signature-empty", &[&splice(2, 2)]);
    corpus.add("splice-signature-short", &[&splice(3, 2), b"AAAA"]);
    corpus.add("splice-header-raw", &[&splice(6, 0), b"eyJhbGciOiJSUzI1NiJ9"]);
    corpus.add("splice-payload-padding", &[&splice(7, 1), b"e30="]);

    // Headers and claims signed by the target with the key it picks.
    for (pick, &alg) in SIGNING_ALGS.iter().enumerate() {
        let name = alg.as_str().to_lowercase();
        let input = [bearer::RESIGN, pick as u8];
        corpus.add(&format!("resign-{name}"), &[&input, base_header(alg).as_bytes(), &[SEP], base_claims().as_bytes()]);
        // HS256 variants verify as plain tokens already; one asymmetric key covers the rest.
        if alg == Algorithm::EdDSA {
            for (variant, claims) in claim_variants() {
                let header = base_header(alg);
                corpus
                    .add(&format!("resign-{name}-{variant}"), &[&input, header.as_bytes(), &[SEP], claims.as_bytes()]);
            }
            for (variant, header) in header_variants(alg) {
                let claims = base_claims();
                corpus.add(
                    &format!("resign-{name}-header-{variant}"),
                    &[&input, header.as_bytes(), &[SEP], claims.as_bytes()],
                );
            }
        }
    }
    let keycloak_claims = keycloak_token.split('.').nth(1).map(|p| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).expect("base64url claims")
    });
    if let Some(claims) = keycloak_claims {
        let header = format!(r#"{{"alg":"RS256","typ" : "JWT","kid" : "{}"}}"#, kid(Algorithm::RS256));
        corpus.add("resign-rs256-keycloak-claims", &[&[bearer::RESIGN, 5], header.as_bytes(), &[SEP], &claims]);
    }
    corpus.done();
}

fn jwks_seeds() {
    let mut corpus = Corpus::new("jwks");
    let signing = signing();
    let public: Vec<Value> = signing.keys.iter().map(|k| k.public_jwk()).collect();
    for (key, alg) in public.iter().zip(SIGNING_ALGS) {
        let entry = if alg.key_family() == tower_oauth::KeyFamily::Symmetric { 1 } else { 0 };
        corpus.add(&format!("jwk-{}", alg.as_str().to_lowercase()), &[&[entry], key.to_string().as_bytes()]);
    }
    let asymmetric: Vec<Value> = public.iter().filter(|k| k["kty"] != "oct").cloned().collect();
    corpus.add("set-test-keys", &[&[2], json!({ "keys": asymmetric }).to_string().as_bytes()]);
    corpus.add("set-test-keys-trusted", &[&[3], json!({ "keys": public }).to_string().as_bytes()]);
    let mut keycloak_rsa = public[5].clone();
    keycloak_rsa["x5c"] = json!(["MIICnzCCAYcCBgF6"]);
    keycloak_rsa["x5t"] = json!("aDgiyxF4nO2u5rl0wOY8Hk5g3TQ");
    let mut enc = public[5].clone();
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    enc["kid"] = json!("enc-key");
    corpus.add("set-keycloak-shaped", &[&[2], json!({ "keys": [keycloak_rsa, enc] }).to_string().as_bytes()]);
    corpus.add("set-empty", &[&[2], br#"{"keys":[]}"#]);
    corpus.add("set-not-an-array", &[&[2], br#"{"keys":{}}"#]);
    corpus.add("set-junk-entries", &[&[2], br#"{"keys":[1,"x",{},{"kty":"foo","kid":"from-the-future"}]}"#]);
    corpus.add(
        "jwk-key-ops",
        &[
            &[0],
            br#"{"kty":"OKP","crv":"Ed25519","key_ops":["sign"],"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        ],
    );
    corpus.add(
        "jwk-x25519",
        &[&[0], br#"{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}"#],
    );
    let mut entries: Vec<_> = fs::read_dir(vectors("rfc7520/jwk")).expect("jwk vectors").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(text) = fs::read_to_string(entry.path()) else { continue };
        let stem = name.split('.').next().unwrap_or(&name).to_owned();
        corpus.add(&format!("jwk-rfc7520-{stem}"), &[&[0], text.as_bytes()]);
        corpus.add(&format!("jwk-rfc7520-{stem}-trusted"), &[&[1], text.as_bytes()]);
    }
    let ed25519 = vector("rfc7520/curve25519/jws.json");
    corpus.add("jwk-rfc8037-ed25519", &[&[0], ed25519["input"]["key"].to_string().as_bytes()]);
    for file in ["json_web_key_test.json", "json_web_signature_test.json"] {
        let stem = file.trim_end_matches("_test.json");
        for (i, key) in wycheproof_keys(file).into_iter().enumerate().step_by(3).take(12) {
            let entry = if key.get("keys").is_some() { 3 } else { 1 };
            corpus.add(&format!("wycheproof-{stem}-{i}"), &[&[entry], key.to_string().as_bytes()]);
        }
    }
    corpus.done();
}

fn discovery_seeds() {
    let mut corpus = Corpus::new("discovery");
    let keycloak = "https://auth.banka.banfico.net/auth/realms/provider";
    let oidc = |issuer: &str| format!("{issuer}/protocol/openid-connect");
    let keycloak_doc = json!({
        "issuer": keycloak,
        "authorization_endpoint": format!("{}/auth", oidc(keycloak)),
        "token_endpoint": format!("{}/token", oidc(keycloak)),
        "introspection_endpoint": format!("{}/token/introspect", oidc(keycloak)),
        "userinfo_endpoint": format!("{}/userinfo", oidc(keycloak)),
        "end_session_endpoint": format!("{}/logout", oidc(keycloak)),
        "jwks_uri": format!("{}/certs", oidc(keycloak)),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "offline_access", "profile", "email"],
        "claims_parameter_supported": true,
        "request_parameter_supported": true,
        "code_challenge_methods_supported": ["plain", "S256"],
        "tls_client_certificate_bound_access_tokens": true
    });
    let bank = "https://api.scalexpert.societegenerale.com/baas/prod/auth-server/api/v1";
    let bank_doc = json!({
        "issuer": bank,
        "token_endpoint": format!("{bank}/oauth2/token"),
        "authorization_endpoint": format!("{bank}/oauth2/authorize"),
        "userinfo_endpoint": format!("{bank}/oauth2/userinfo"),
        "jwks_uri": format!("{bank}/oauth2/jwks"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "scopes_supported": ["openid"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "id_token_encryption_alg_values_supported": ["RSA-OAEP-256"],
        "id_token_encryption_enc_values_supported": ["A256GCM"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"]
    });
    corpus.add("keycloak", &[&[0, 0], keycloak_doc.to_string().as_bytes()]);
    corpus.add("keycloak-pretty", &[&[0, 0], serde_json::to_string_pretty(&keycloak_doc).expect("json").as_bytes()]);
    corpus.add("bank", &[&[0, 1], bank_doc.to_string().as_bytes()]);
    corpus.add("other-issuer", &[&[0, 1], keycloak_doc.to_string().as_bytes()]);
    corpus.add(
        "trailing-slash",
        &[&[0, 0], json!({ "issuer": format!("{keycloak}/"), "jwks_uri": "https://x/certs" }).to_string().as_bytes()],
    );
    corpus.add(
        "http-jwks-uri",
        &[&[0, 0], json!({ "issuer": keycloak, "jwks_uri": "http://10.0.0.1/certs" }).to_string().as_bytes()],
    );
    corpus.add("issuer-null", &[&[0, 0], br#"{"issuer":null,"jwks_uri":"https://x"}"#]);
    corpus
        .add("duplicate-issuer", &[&[0, 0], format!(r#"{{"issuer":"{keycloak}","issuer":"{keycloak}"}}"#).as_bytes()]);
    corpus.add("array-form", &[&[0, 0], format!(r#"["{keycloak}",null,null,null,null]"#).as_bytes()]);
    let local = "http://127.0.0.1:8080/realms/test";
    let local_doc = json!({
        "issuer": local,
        "jwks_uri": format!("{local}/jwks"),
        "token_endpoint": format!("{local}/token"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"]
    });
    corpus.add("loopback", &[&[1], local.as_bytes(), &[SEP], local_doc.to_string().as_bytes()]);
    for (name, issuer) in [
        ("keycloak", keycloak),
        ("bank", bank),
        ("query-fragment", "https://idp.example/tenant/?q=1#frag"),
        ("ipv6-loopback", "http://[::1]:8080/x/"),
        ("localhost", "http://localhost/"),
        ("encoded-slash", "https://idp.example/a%2Fb/"),
        ("http-remote", "http://10.0.0.1/"),
        ("userinfo", "https://user:pass@idp.example:8443/realm"),
    ] {
        corpus.add(&format!("issuer-{name}"), &[&[2], issuer.as_bytes()]);
    }
    for (name, cache_control, retry_after) in [
        ("max-age", "max-age=300, public", "120"),
        ("no-store", "no-store", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("quoted", "Max-Age=\"60\"", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("overflow", "max-age=18446744073709551616", "-1"),
        ("keycloak", "no-cache, must-revalidate, no-transform, no-store", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ] {
        corpus.add(&format!("headers-{name}"), &[&[3], cache_control.as_bytes(), &[SEP], retry_after.as_bytes()]);
    }
    corpus.done();
}

fn token_response_seeds() {
    let keycloak = keycloak_response();
    let mut corpus = Corpus::new("token_response");
    let signing = signing();
    corpus.add("keycloak-sample", &[&[0], keycloak.as_bytes()]);
    let bank_jwe = encryption::encryption().tokens[0].clone();
    let bank = json!({
        "access_token": bank_jwe,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "8xLOxBtZp8",
        "id_token": signing.tokens[5],
        "scope": "openid"
    });
    corpus.add("bank-shaped", &[&[0], bank.to_string().as_bytes()]);
    let token = &signing.tokens[0];
    let success = |extra: Value| {
        let mut body = json!({"access_token": token, "token_type": "Bearer", "expires_in": 300});
        for (name, value) in extra.as_object().expect("an object") {
            body[name] = value.clone();
        }
        body.to_string()
    };
    for (name, body) in [
        ("expires-in-string", success(json!({"expires_in": "300"}))),
        ("expires-in-float", success(json!({"expires_in": 300.0}))),
        ("expires-in-huge", success(json!({"expires_in": 1e30}))),
        ("expires-in-negative", success(json!({"expires_in": -1}))),
        ("expires-in-null", success(json!({"expires_in": null}))),
        ("token-type-lowercase", success(json!({"token_type": "bearer"}))),
        ("token-type-dpop", success(json!({"token_type": "DPoP"}))),
        ("token-type-control", success(json!({"token_type": "N_A\r\n\u{1b}[31m"}))),
        ("token-type-missing", json!({"access_token": token}).to_string()),
        ("access-token-space", success(json!({"access_token": "a b"}))),
        ("access-token-empty", success(json!({"access_token": ""}))),
        ("refresh-token-object", success(json!({"refresh_token": {}}))),
        ("refresh-token-empty", success(json!({"refresh_token": ""}))),
        ("scope-array", success(json!({"scope": ["a", "b"]}))),
        ("oidc-provider", success(json!({"scope": "api:read", "expires_in": 600}))),
    ] {
        corpus.add(&format!("success-{name}"), &[&[0], body.as_bytes()]);
    }
    corpus.add("success-html", &[&[0], b"<html><body>Bad Gateway</body></html>"]);
    corpus.add("success-array", &[&[0], b"[]"]);
    // RFC 6749 §5.2 errors: the status is 400 + the two bytes (mod 200).
    for (name, status, body) in [
        ("invalid-client", 401u16, json!({"error": "invalid_client", "error_description": "bad\r\nsecret\u{1b}[31m"})),
        ("invalid-grant", 400, json!({"error": "invalid_grant", "error_description": "Token is not active"})),
        (
            "keycloak-unauthorized-client",
            401,
            json!({"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}),
        ),
        ("invalid-scope", 400, json!({"error": "invalid_scope", "error_uri": "https://idp.example/errors#scope"})),
        ("slow-down", 400, json!({"error": "slow_down"})),
        ("bidi", 400, json!({"error": "invalid_request", "error_description": "a\u{202e}b\u{2066}c"})),
        ("long", 400, json!({"error": "invalid_target", "error_description": "é".repeat(300)})),
        ("error-number", 400, json!({"error": 1})),
        ("error-empty", 403, json!({"error": ""})),
    ] {
        let offset = (status - 400).to_be_bytes();
        corpus.add(&format!("error-{name}"), &[&[1], &offset, body.to_string().as_bytes()]);
    }
    // Status and Retry-After: the status is 100 + the two bytes (mod 900).
    for (name, status, retry_after) in [
        ("429-seconds", 429u16, "120"),
        ("503-date", 503, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("500-none", 500, ""),
        ("302", 302, ""),
        ("404", 404, "0"),
        ("429-junk", 429, "soon"),
    ] {
        corpus.add(&format!("status-{name}"), &[&[2], &(status - 100).to_be_bytes(), retry_after.as_bytes()]);
    }
    corpus.done();
}

fn www_authenticate_seeds() {
    let mut corpus = Corpus::new("www_authenticate");
    const REALM: u8 = 32;
    const VERBOSE: u8 = 8;
    const GRPC: u8 = 16;
    for (name, flags, pick, realm, scope) in [
        ("missing", REALM, 0u8, "api", ""),
        ("missing-no-realm", 0, 0, "", ""),
        ("invalid-request", REALM | 1, 2, "api", ""),
        ("invalid-token-expired", REALM | VERBOSE | 2, 16, "api", ""),
        ("invalid-token-grpc", REALM | GRPC | VERBOSE | 3, 1, "api", ""),
        ("insufficient-scope", REALM | 4, 0, "api", "admin write"),
        ("insufficient-scope-injection", REALM | VERBOSE | 5, 0, "evil\", error=\"x", "a\"b\\c\r\nd é"),
        ("unavailable", REALM | 6, 0, "api", ""),
        ("unavailable-grpc", GRPC | 7, 0, "", ""),
        ("unicode-realm", REALM | VERBOSE | GRPC | 2, 5, "Ünïcødé \u{202e} realm", ""),
        ("control-realm", REALM | 1, 0, "a\u{0}b\tc\u{7f}", ""),
    ] {
        corpus.add(name, &[&[flags, pick], realm.as_bytes(), &[SEP], scope.as_bytes()]);
    }
    corpus.done();
}

fn jwe_seeds() {
    let mut corpus = Corpus::new("jwe");
    let signing = signing();
    let encryption = encryption::encryption();
    for (name, compact) in compact_outputs("rfc7520/jwe") {
        corpus.add(&format!("token-rfc7520-{name}"), &[&[0], compact.as_bytes()]);
    }
    for (name, compact) in compact_outputs("rfc7520/curve25519") {
        corpus.add(&format!("token-rfc8037-{name}"), &[&[0], compact.as_bytes()]);
    }
    let nested = vector("rfc7520/6.nesting_signatures_and_encryption.json");
    if let Some(compact) = nested["output"]["compact"].as_str() {
        corpus.add("token-rfc7520-nested", &[&[0], compact.as_bytes()]);
    }
    for (id, jwe) in wycheproof_tokens("json_web_encryption_test.json", "jwe", 20) {
        corpus.add(&format!("token-wycheproof-{id}"), &[&[0], jwe.as_bytes()]);
    }
    for (alg, token) in KEY_ALGS.iter().zip(&encryption.tokens) {
        corpus.add(&format!("token-nested-{}", alg.to_lowercase()), &[&[0], token.as_bytes()]);
    }
    let rsa1_5 = TestEncryptionKey::generate("RSA1_5").with_kid("fuzz-rsa1_5");
    corpus.add(
        "token-rsa1_5",
        &[&[0], rsa1_5.encrypt(signing.tokens[0].as_bytes(), "A128CBC-HS256", Some("JWT")).as_bytes()],
    );

    // New protected headers for a real JWE (pick 0 RSA-OAEP-256, 1 ECDH-ES, 2 A256KW, 3 dir).
    let epk = |crv: &str, x: &str, y: &str| json!({"kty": "EC", "crv": crv, "x": x, "y": y});
    let p256_x = "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0";
    let p256_y = "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps";
    for (name, pick, header) in [
        (
            "rsa",
            0u8,
            json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": encryption::kid("RSA-OAEP-256"), "cty": "JWT"}),
        ),
        ("rsa-zip", 0, json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "zip": "DEF"})),
        ("rsa-crit", 0, json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "crit": ["exp"], "exp": 1})),
        ("rsa1_5", 0, json!({"alg": "RSA1_5", "enc": "A128CBC-HS256"})),
        ("pbes2", 0, json!({"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2s": "AAAA", "p2c": 100000000})),
        ("enc-unknown", 0, json!({"alg": "RSA-OAEP-256", "enc": "A256CTR"})),
        (
            "ecdh",
            1,
            json!({"alg": "ECDH-ES", "enc": "A256GCM", "kid": encryption::kid("ECDH-ES"), "epk": epk("P-256", p256_x, p256_y)}),
        ),
        ("ecdh-epk-p384", 1, json!({"alg": "ECDH-ES", "enc": "A256GCM", "epk": epk("P-384", p256_x, p256_y)})),
        ("ecdh-epk-short", 1, json!({"alg": "ECDH-ES", "enc": "A256GCM", "epk": epk("P-256", "AAAA", "AAAA")})),
        (
            "ecdh-epk-x25519",
            1,
            json!({"alg": "ECDH-ES", "enc": "A256GCM", "epk": {"kty": "OKP", "crv": "X25519", "x": p256_x}}),
        ),
        ("ecdh-epk-missing", 1, json!({"alg": "ECDH-ES", "enc": "A256GCM"})),
        (
            "ecdh-apu",
            1,
            json!({"alg": "ECDH-ES", "enc": "A256GCM", "epk": epk("P-256", p256_x, p256_y), "apu": "QWxpY2U", "apv": "Qm9i"}),
        ),
        ("a256kw", 2, json!({"alg": "A256KW", "enc": "A256GCM", "kid": encryption::kid("A256KW")})),
        ("dir", 3, json!({"alg": "dir", "enc": "A256GCM", "kid": encryption::kid("dir")})),
        ("dir-enc-mismatch", 3, json!({"alg": "dir", "enc": "A128GCM"})),
        ("dir-cbc", 3, json!({"alg": "dir", "enc": "A128CBC-HS256"})),
        (
            "gcmkw",
            2,
            json!({"alg": "A256GCMKW", "enc": "A256GCM", "iv": "AAAAAAAAAAAAAAAA", "tag": "AAAAAAAAAAAAAAAAAAAAAA"}),
        ),
    ] {
        corpus.add(&format!("header-{name}"), &[&[1, pick], header.to_string().as_bytes()]);
    }
    // A segment replaced (+8 base64url-encodes the replacement).
    for (name, pick, segment, replacement) in [
        ("rsa-key-empty", 0u8, 1u8, &b""[..]),
        ("ecdh-key-present", 1, 1 | 8, b"key"),
        ("iv-short", 0, 2, b"AAAA"),
        ("iv-empty", 2, 2, b""),
        ("ciphertext", 0, 3 | 8, b"ciphertext"),
        ("tag-empty", 1, 4, b""),
        ("tag-long", 2, 4 | 8, b"0123456789abcdef0123"),
        ("header-padding", 0, 0, b"eyJ9="),
    ] {
        corpus.add(&format!("segment-{name}"), &[&[2, pick, segment], replacement]);
    }
    // Plaintexts encrypted by the target: pick, then `enc` (low bits) and `cty` (bits 4-5).
    let claims = base_claims();
    let expired = &claim_variants()[0].1;
    for (name, pick, choice, plaintext) in [
        ("nested-rsa", 0u8, 0x10u8, signing.tokens[0].as_bytes()),
        ("nested-ecdh-cbc", 1, 0x13, signing.tokens[0].as_bytes()),
        ("nested-no-cty", 2, 0x00, signing.tokens[7].as_bytes()),
        ("nested-at-jwt", 0, 0x25, signing.tokens[1].as_bytes()),
        ("claims-a256kw", 2, 0x01, claims.as_bytes()),
        ("claims-dir", 3, 0x00, claims.as_bytes()),
        ("claims-rsa", 0, 0x00, claims.as_bytes()),
        ("claims-json-cty", 2, 0x34, expired.as_bytes()),
        ("jwe-in-jwe", 0, 0x10, encryption.tokens[2].as_bytes()),
        ("looks-like-jws", 1, 0x02, b"eyJ.not.jws"),
    ] {
        corpus.add(&format!("plaintext-{name}"), &[&[3, pick, choice], plaintext]);
    }
    corpus.done();
}

fn main() {
    bearer_seeds();
    jwks_seeds();
    discovery_seeds();
    token_response_seeds();
    www_authenticate_seeds();
    jwe_seeds();
}
