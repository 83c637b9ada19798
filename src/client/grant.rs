//! The inputs of the grants beyond RFC 6749's: the JWT bearer grant's assertion
//! (RFC 7523 §2.1) and token exchange's subject (RFC 8693).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Secret;

/// `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `grant_type` of token exchange (RFC 8693 §2.1).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type identifiers of RFC 8693 §3, for
/// [`TokenExchange::new`], [`TokenExchange::actor_token`] and
/// [`TokenExchange::requested_token_type`].
pub mod token_type {
    /// An OAuth 2.0 access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// An OAuth 2.0 refresh token.
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// A JWT (RFC 7519), such as a platform's workload identity token.
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
}

/// The largest assertion read from a file: far beyond any real JWT, small enough that
/// a wrong path (a log, a disk image) is refused rather than read.
const MAX_ASSERTION_SIZE: u64 = 64 * 1024;

/// Where the JWT bearer grant's assertion (RFC 7523 §2.1) comes from: a file that is
/// read again at each token request, so a rotated token (a projected Kubernetes
/// service-account token, a SPIFFE JWT-SVID written by an agent) is picked up when it
/// changes, or a function, or a fixed value.
///
/// ```
/// use tower_oauth::client::{AssertionSource, TokenEndpoint, ClientCredential};
///
/// let source = AssertionSource::file("/var/run/secrets/tokens/oauth");
/// let endpoint = TokenEndpoint::builder("https://idp.example/token", "workload", ClientCredential::None)
///     .jwt_bearer(source)
///     .build()?;
/// # Ok::<(), tower_oauth::BuildError>(())
/// ```
#[derive(Clone)]
pub struct AssertionSource(Source);

#[derive(Clone)]
enum Source {
    File(PathBuf),
    Fixed(Secret),
    Function(Arc<dyn Fn() -> Result<Secret, std::io::Error> + Send + Sync>),
}

impl AssertionSource {
    /// The contents of `path`, read at each token request (surrounding whitespace
    /// trimmed). A file that is missing, unreadable, empty or over 64 KiB fails that
    /// request with [`TokenError::Assertion`](super::TokenError::Assertion), and the
    /// cache backs off as for any failed fetch.
    pub fn file(path: impl Into<PathBuf>) -> AssertionSource {
        AssertionSource(Source::File(path.into()))
    }

    /// Always this assertion: for tests, and for assertions that outlive the process.
    pub fn fixed(assertion: impl Into<Secret>) -> AssertionSource {
        AssertionSource(Source::Fixed(assertion.into()))
    }

    /// The value `make` returns at each token request.
    pub fn from_fn(make: impl Fn() -> Result<Secret, std::io::Error> + Send + Sync + 'static) -> AssertionSource {
        AssertionSource(Source::Function(Arc::new(make)))
    }

    /// The current assertion.
    pub(crate) async fn read(&self) -> Result<Secret, std::io::Error> {
        use std::io::{Error, ErrorKind};
        let value = match &self.0 {
            Source::Fixed(assertion) => return Ok(assertion.clone()),
            Source::Function(make) => make()?,
            Source::File(path) => {
                use tokio::io::AsyncReadExt as _;
                let file = tokio::fs::File::open(path).await?;
                let mut bytes = Vec::new();
                file.take(MAX_ASSERTION_SIZE + 1).read_to_end(&mut bytes).await?;
                if bytes.len() as u64 > MAX_ASSERTION_SIZE {
                    return Err(Error::new(ErrorKind::InvalidData, "the assertion file is over 64 KiB"));
                }
                Secret::from(bytes)
            }
        };
        let trimmed = value.expose().trim_ascii();
        if trimmed.is_empty() {
            return Err(Error::new(ErrorKind::InvalidData, "the assertion is empty"));
        }
        Ok(if trimmed.len() == value.expose().len() { value } else { Secret::from(trimmed) })
    }
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::File(path) => f.debug_tuple("AssertionSource::File").field(path).finish(),
            Source::Fixed(_) => f.write_str("AssertionSource::Fixed(***)"),
            Source::Function(_) => f.write_str("AssertionSource::Function"),
        }
    }
}

/// What a token exchange (RFC 8693 §2.1) trades: the subject token, and optionally an
/// actor token and the type of token wanted. The target (`audience`, `resource`) and
/// `scope` are the token endpoint's, as for any grant.
///
/// ```
/// use tower_oauth::client::{TokenEndpoint, TokenExchange};
///
/// # fn run(inbound_token: &str) -> Result<(), tower_oauth::BuildError> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/token", "gateway", "s3cret")
///     .token_exchange(TokenExchange::access_token(inbound_token))
///     .audience("https://orders.example")
///     .scope("orders:read")
///     .build()?;
/// # let _ = endpoint; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    pub(crate) subject_token: Secret,
    pub(crate) subject_token_type: String,
    pub(crate) actor: Option<(Secret, String)>,
    pub(crate) requested_token_type: Option<String>,
}

impl TokenExchange {
    /// Exchanges `subject_token` of `subject_token_type` (one of [`token_type`]'s, or
    /// another URI the server knows).
    pub fn new(subject_token: impl Into<Secret>, subject_token_type: impl Into<String>) -> TokenExchange {
        TokenExchange {
            subject_token: subject_token.into(),
            subject_token_type: subject_token_type.into(),
            actor: None,
            requested_token_type: None,
        }
    }

    /// Exchanges an access token ([`token_type::ACCESS_TOKEN`]): the usual case of a
    /// service acting for the caller whose token it received.
    pub fn access_token(subject_token: impl Into<Secret>) -> TokenExchange {
        TokenExchange::new(subject_token, token_type::ACCESS_TOKEN)
    }

    /// The party acting for the subject (RFC 8693 §1.1, delegation): its token and type.
    #[must_use]
    pub fn actor_token(mut self, token: impl Into<Secret>, token_type: impl Into<String>) -> TokenExchange {
        self.actor = Some((token.into(), token_type.into()));
        self
    }

    /// The type of token wanted back (`requested_token_type`); unset, the server
    /// chooses (an access token, usually).
    #[must_use]
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> TokenExchange {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// The form pairs of the exchange, after `grant_type`.
    pub(crate) fn write(&self, form: &mut crate::idp::fetch::Form) {
        form.pair("subject_token", self.subject_token.expose());
        form.pair("subject_token_type", self.subject_token_type.as_bytes());
        if let Some((token, kind)) = &self.actor {
            form.pair("actor_token", token.expose());
            form.pair("actor_token_type", kind.as_bytes());
        }
        if let Some(kind) = &self.requested_token_type {
            form.pair("requested_token_type", kind.as_bytes());
        }
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("subject_token", &"***")
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token", &self.actor.as_ref().map(|(_, kind)| ("***", kind)))
            .field("requested_token_type", &self.requested_token_type)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_read_again_at_each_request_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("tower-oauth-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let source = AssertionSource::file(&path);
        assert_eq!(source.read().await.unwrap_err().kind(), std::io::ErrorKind::NotFound);
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read().await.unwrap().expose(), b"first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.read().await.unwrap().expose(), b"second");
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(source.read().await.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        std::fs::write(&path, vec![b'a'; 64 * 1024 + 1]).unwrap();
        assert_eq!(source.read().await.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!format!("{:?}", AssertionSource::fixed("hunter2")).contains("hunter2"));
    }

    #[test]
    fn an_exchange_writes_its_pairs_and_hides_its_tokens() {
        let exchange = TokenExchange::access_token("sub&1")
            .actor_token("act", token_type::JWT)
            .requested_token_type(token_type::ACCESS_TOKEN);
        let mut form = crate::idp::fetch::Form::default();
        exchange.write(&mut form);
        assert_eq!(
            String::from_utf8(form.into_bytes()).unwrap(),
            "subject_token=sub%261&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &actor_token=act&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        );
        let debug = format!("{exchange:?}");
        assert!(!debug.contains("sub&1") && !debug.contains("\"act\""), "{debug}");
    }
}
