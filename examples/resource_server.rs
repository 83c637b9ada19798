//! An axum API protected by `BearerAuthLayer`, configured from the environment.
//!
//! Run with: `OAUTH_ISSUER=https://idp.example OAUTH_AUDIENCE=my-api cargo run --example resource_server`
//!
//! | variable | meaning |
//! |---|---|
//! | `OAUTH_ISSUER` | issuer URL (discovery); `iss` must equal it |
//! | `OAUTH_ISSUERS` | comma list of trusted issuers (multi-tenant), instead of `OAUTH_ISSUER`; each is discovered on its first token; an entry with one `{tenant}` path segment is a pattern |
//! | `OAUTH_JWKS_URI` | overrides the discovered `jwks_uri` (single issuer) |
//! | `OAUTH_AUDIENCE` | required unless `OAUTH_RESOURCE` is set; `aud` must contain it |
//! | `OAUTH_RESOURCE` | this server's resource identifier (RFC 9728, RFC 8707): serves its metadata at `/.well-known/oauth-protected-resource` (path inserted for a resource with a path), adds `resource_metadata` to challenges, and is the audience when `OAUTH_AUDIENCE` is unset |
//! | `OAUTH_ALGORITHMS` | comma list; default: the asymmetric algorithms |
//! | `OAUTH_REQUIRE_AT_JWT` | `1`: strict RFC 9068 `typ` |
//! | `OAUTH_DECRYPTION_KEYS` | path to a JWK Set of private keys; JWE tokens are accepted only when set |
//! | `OAUTH_INTROSPECTION_URL` | RFC 7662 endpoint: opaque tokens (and JWEs no decryption key opens) are introspected |
//! | `OAUTH_INTROSPECTION_CLIENT_ID`, `OAUTH_INTROSPECTION_CLIENT_SECRET` | this server's credentials there (the secret for the methods that use one) |
//! | `OAUTH_INTROSPECTION_AUTH_METHOD` | how it authenticates there: `basic` (default), `post`, `client_secret_jwt`, `basic_unencoded` (all with `OAUTH_INTROSPECTION_CLIENT_SECRET`) or `private_key_jwt` (with `OAUTH_INTROSPECTION_CLIENT_KEY`), as the `client_credentials` example's `OAUTH_AUTH_METHOD` |
//! | `OAUTH_INTROSPECTION_CLIENT_KEY` | with `OAUTH_INTROSPECTION_AUTH_METHOD=private_key_jwt`: a private JWK or PKCS#8 PEM file that signs the client assertions |
//! | `OAUTH_ADMIN_SCOPE` | scope `/admin` requires; default `admin` |
//! | `OAUTH_ADMIN_ACR` | comma list of the `acr` values `/admin` accepts (step-up, RFC 9470) |
//! | `OAUTH_ADMIN_MAX_AGE` | seconds since `auth_time` that `/admin` allows (step-up, RFC 9470) |
//! | `OAUTH_TOKEN_CACHE` | `1`: the verified-token cache |
//! | `OAUTH_DPOP` | `off`, `allowed` (default) or `required`: DPoP-bound tokens with their proofs (RFC 9449) |
//! | `OAUTH_DPOP_NONCE` | `1`: DPoP proofs must carry a server nonce (`use_dpop_nonce`) |
//! | `PUBLIC_URL` | the base URL clients use, which DPoP's `htu` is checked against; default `http://` (or `https://`) + the listen address |
//! | `REDIS_URL` | a DPoP replay cache shared with other replicas through Redis (fails closed with 503 when Redis is down) |
//! | `TLS_CERT`, `TLS_KEY` | PEM files: serve https |
//! | `TLS_CLIENT_CA` | PEM file: ask clients for certificates issued by this CA, and accept certificate-bound tokens (`cnf.x5t#S256`, RFC 8705) with them |
//! | `METRICS` | `1`: the crate's metrics (feature `metrics`) in Prometheus text at `/metrics` |
//! | `LISTEN` | default `127.0.0.1:3000` |
//!
//! Try it against the test issuer (`cargo run --example test_issuer` prints a token):
//! ```text
//! curl -i localhost:3000/healthz
//! curl -i localhost:3000/me                                   # 401
//! curl -i -H "Authorization: Bearer $TOKEN" localhost:3000/me # 200 and the claims
//! curl -i -H "Authorization: Bearer $TOKEN" localhost:3000/admin
//! ```
//!
//! A DPoP-bound token (`$PROOF` made for `GET http://127.0.0.1:3000/me` with the token's key):
//! ```text
//! curl -i -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" localhost:3000/me
//! ```
//!
//! A discoverable server whose `/admin` wants a recent multi-factor login:
//! ```text
//! OAUTH_ISSUER=https://idp.example OAUTH_RESOURCE=http://127.0.0.1:3000 OAUTH_ADMIN_ACR=urn:example:mfa \
//!   OAUTH_ADMIN_MAX_AGE=300 cargo run --example resource_server
//! curl -i localhost:3000/.well-known/oauth-protected-resource
//! ```
//!
//! Opaque tokens, and two tenants:
//! ```text
//! OAUTH_ISSUER=https://idp.example OAUTH_AUDIENCE=my-api OAUTH_INTROSPECTION_URL=https://idp.example/introspect \
//!   OAUTH_INTROSPECTION_CLIENT_ID=my-api OAUTH_INTROSPECTION_CLIENT_SECRET=s3cret cargo run --example resource_server
//! OAUTH_ISSUERS=https://a.idp.example,https://login.example.com/{tenant}/v2.0 OAUTH_AUDIENCE=my-api \
//!   cargo run --example resource_server
//! ```

use std::env;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use tower_oauth::bearer::{RequireScopeLayer, StepUpLayer, StepUpRequirement, VerifiedTokenCache};
use tower_oauth::client::store::RedisTokenStore;
use tower_oauth::introspect::{AuthMethod, ClientCredential, ClientKey, Introspector};
use tower_oauth::mtls::{self, AddClientCertificateLayer, ClientCertificate};
use tower_oauth::resource::ProtectedResourceMetadata;
use tower_oauth::validate::dpop::{DpopReplayCache, DpopVerifier};
use tower_oauth::validate::{DecryptionKeys, DpopMode, IssuerPattern};
use tower_oauth::{Algorithm, BearerAuthLayer, Claims, KeyStore, TypPolicy, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(env_filter()).with_writer(std::io::stderr).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_oauth=info".into())
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// How this server authenticates to the introspection endpoint
/// (`OAUTH_INTROSPECTION_AUTH_METHOD`, the values of the `client_credentials` example's
/// `OAUTH_AUTH_METHOD`), and with what: `OAUTH_INTROSPECTION_CLIENT_SECRET`, or the
/// private key of `OAUTH_INTROSPECTION_CLIENT_KEY`.
fn introspection_auth() -> Result<(AuthMethod, ClientCredential), Box<dyn std::error::Error>> {
    let method = var("OAUTH_INTROSPECTION_AUTH_METHOD").map_or_else(|| "basic".to_owned(), |m| m.trim().to_owned());
    let secret = var("OAUTH_INTROSPECTION_CLIENT_SECRET");
    let with_secret = |chosen: AuthMethod| match &secret {
        Some(secret) => Ok((chosen, ClientCredential::from(secret))),
        None if method == "basic" => Err("OAUTH_INTROSPECTION_CLIENT_SECRET is required".into()),
        None => Err(format!("OAUTH_INTROSPECTION_AUTH_METHOD={method} needs OAUTH_INTROSPECTION_CLIENT_SECRET").into()),
    };
    match method.as_str() {
        "basic" => with_secret(AuthMethod::ClientSecretBasic),
        "basic_unencoded" => with_secret(AuthMethod::ClientSecretBasicUnencoded),
        "post" => with_secret(AuthMethod::ClientSecretPost),
        "client_secret_jwt" => with_secret(AuthMethod::ClientSecretJwt),
        "private_key_jwt" => {
            let path = var("OAUTH_INTROSPECTION_CLIENT_KEY")
                .ok_or("OAUTH_INTROSPECTION_AUTH_METHOD=private_key_jwt needs OAUTH_INTROSPECTION_CLIENT_KEY")?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("OAUTH_INTROSPECTION_CLIENT_KEY: cannot read {path}: {e}"))?;
            let key = ClientKey::from_file_contents(&text)
                .map_err(|e| format!("OAUTH_INTROSPECTION_CLIENT_KEY: {path}: {e}"))?;
            Ok((AuthMethod::PrivateKeyJwt, ClientCredential::Key(key)))
        }
        "tls_client_auth" => Err("OAUTH_INTROSPECTION_AUTH_METHOD=tls_client_auth is not supported by this example \
             (it has no TLS client certificate for the introspection endpoint)"
            .into()),
        other => Err(format!(
            "OAUTH_INTROSPECTION_AUTH_METHOD must be basic, basic_unencoded, post, client_secret_jwt or \
             private_key_jwt, not {other:?}"
        )
        .into()),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Installed before anything validates: the crate takes its metric handles at first use.
    let metrics = match var("METRICS").as_deref() {
        Some("1") => Some(metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?),
        _ => None,
    };
    let resource = var("OAUTH_RESOURCE");
    let mut builder = Validator::builder();
    match (var("OAUTH_AUDIENCE"), &resource) {
        (Some(audience), _) => builder = builder.audience(audience),
        (None, Some(_)) => {}
        (None, None) => return Err("OAUTH_AUDIENCE (or OAUTH_RESOURCE) is required".into()),
    }
    if let Some(resource) = &resource {
        builder = builder.resource(resource);
    }
    match (var("OAUTH_ISSUERS"), var("OAUTH_ISSUER")) {
        (Some(issuers), _) => {
            // Many tenants: none is fetched before its first token.
            builder = builder.lazy_discovery();
            for issuer in list(&issuers) {
                builder = if issuer.contains('{') {
                    let pattern = IssuerPattern::template(issuer)
                        .map_err(|e| format!("OAUTH_ISSUERS: {issuer} is not a pattern: {e}"))?;
                    builder.issuer_pattern(pattern)
                } else {
                    builder.issuer(issuer)
                };
            }
        }
        (None, Some(issuer)) => {
            builder = match var("OAUTH_JWKS_URI") {
                Some(jwks_uri) => {
                    let keys = KeyStore::builder().issuer(&issuer).jwks_uri(jwks_uri).build()?;
                    builder.issuer_with_keys(issuer, keys)
                }
                None => builder.issuer(issuer),
            };
        }
        (None, None) => return Err("OAUTH_ISSUER (or OAUTH_ISSUERS) is required".into()),
    }
    if let Some(algorithms) = var("OAUTH_ALGORITHMS") {
        let algorithms = list(&algorithms).map(str::parse).collect::<Result<Vec<Algorithm>, _>>()?;
        builder = builder.algorithms(algorithms);
    }
    if var("OAUTH_REQUIRE_AT_JWT").as_deref() == Some("1") {
        builder = builder.typ(TypPolicy::Rfc9068);
    }
    if let Some(path) = var("OAUTH_DECRYPTION_KEYS") {
        let jwks = std::fs::read(&path).map_err(|e| format!("OAUTH_DECRYPTION_KEYS: cannot read {path}: {e}"))?;
        builder = builder.decryption_keys(DecryptionKeys::from_jwks(&jwks)?);
    }
    if let Some(url) = var("OAUTH_INTROSPECTION_URL") {
        let client_id = var("OAUTH_INTROSPECTION_CLIENT_ID").ok_or("OAUTH_INTROSPECTION_CLIENT_ID is required")?;
        let (method, credential) = introspection_auth()?;
        let introspector = Introspector::builder(url, client_id, credential).auth_method(method).build()?;
        builder = builder.introspection_fallback(introspector);
    }
    let dpop_mode: DpopMode = match var("OAUTH_DPOP") {
        Some(mode) => mode.parse().map_err(|e| format!("OAUTH_DPOP: {e}"))?,
        None => DpopMode::Allowed,
    };
    builder = builder.dpop(dpop_mode);
    let admin_scope = var("OAUTH_ADMIN_SCOPE").unwrap_or_else(|| "admin".to_owned());
    let mut admin_step_up = StepUpRequirement::new();
    if let Some(acr) = var("OAUTH_ADMIN_ACR") {
        admin_step_up = admin_step_up.acr_values(list(&acr));
    }
    if let Some(max_age) = var("OAUTH_ADMIN_MAX_AGE") {
        let secs: u64 = max_age.parse().map_err(|e| format!("OAUTH_ADMIN_MAX_AGE: {e}"))?;
        admin_step_up = admin_step_up.max_age(Duration::from_secs(secs));
    }
    let mut auth = BearerAuthLayer::new(builder.build()?).realm("resource_server");
    if var("OAUTH_TOKEN_CACHE").as_deref() == Some("1") {
        auth = auth.cache(VerifiedTokenCache::default());
    }

    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let address = listener.local_addr()?;
    let tls = match (var("TLS_CERT"), var("TLS_KEY")) {
        (Some(cert), Some(key)) => {
            let read =
                |name: &str, path: &str| std::fs::read(path).map_err(|e| format!("{name}: cannot read {path}: {e}"));
            let client_ca = var("TLS_CLIENT_CA").map(|path| read("TLS_CLIENT_CA", &path)).transpose()?;
            let config = mtls::server_config(&read("TLS_CERT", &cert)?, &read("TLS_KEY", &key)?, client_ca.as_deref())?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        (None, None) => None,
        _ => return Err("TLS_CERT and TLS_KEY go together".into()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if dpop_mode != DpopMode::Off {
        let public_url = var("PUBLIC_URL").unwrap_or_else(|| format!("{scheme}://{address}"));
        let mut dpop = DpopVerifier::builder(&public_url);
        if var("OAUTH_DPOP_NONCE").as_deref() == Some("1") {
            dpop = dpop.require_nonce();
        }
        if let Some(url) = var("REDIS_URL") {
            dpop = dpop.replay_cache(DpopReplayCache::shared(RedisTokenStore::new(&url)?, "tower-oauth:dpop:"));
        }
        auth = auth.dpop(dpop.build().map_err(|e| format!("PUBLIC_URL: {e}"))?);
    }

    // Served beside the bearer layer, not behind it: clients read it before they have a token.
    let metadata = match resource {
        Some(_) => {
            Some(ProtectedResourceMetadata::from_layer(&auth)?.resource_name("resource_server example").build()?)
        }
        None => None,
    };
    // The scope is checked first (the outer layer): a step-up cannot add a scope.
    let app = Router::new()
        .route("/admin", get(admin))
        .route_layer(StepUpLayer::new(admin_step_up))
        .route_layer(RequireScopeLayer::new([admin_scope]))
        .route("/me", get(me))
        .layer(auth)
        .route("/healthz", get(|| async { "ok" }));
    let app = match metadata {
        Some(metadata) => app.merge(metadata.router()),
        None => app,
    };
    let app = match metrics {
        Some(handle) => app.route("/metrics", get(move || std::future::ready(handle.render()))),
        None => app,
    };

    println!("listening on {scheme}://{address}");
    match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?,
        Some(acceptor) => serve_tls(listener, acceptor, app).await?,
    }
    Ok(())
}

/// https, one task per connection; the client's certificate, if it sent one, goes into
/// each of the connection's requests for the bearer layer to check against `cnf`.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
) -> Result<(), Box<dyn std::error::Error>> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::Layer as _;

    let shutdown = shutdown();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let certificate = ClientCertificate::from_tls_stream(&tls);
            let service = AddClientCertificateLayer::new(certificate).layer(app);
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// The validated claims, as the token carried them.
async fn me(claims: Claims) -> Json<Claims> {
    Json(claims)
}

async fn admin(claims: Claims) -> String {
    format!("hello admin {}\n", claims.subject().unwrap_or("?"))
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
