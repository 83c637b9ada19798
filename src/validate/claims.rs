//! Claims: the registered ones the policy checks, and the ready [`Claims`] type.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ValidationError;
use super::json::{Invalid, Reader};

/// A string that borrows from the input when it has no escapes.
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A claim that is a string or an array of strings (`aud`, RFC 7519 §4.1.3; `scp`).
pub(crate) struct StringOrList<'a> {
    /// The first two items apart, so the common one or two audiences (an API and
    /// `account`, say) need no allocation; they are filled in order.
    head: [Option<Cow<'a, str>>; 2],
    rest: Vec<Cow<'a, str>>,
}

impl<'a> StringOrList<'a> {
    fn one(item: Cow<'a, str>) -> Self {
        StringOrList { head: [Some(item), None], rest: Vec::new() }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Cow<'a, str>> {
        self.head.iter().flatten().chain(self.rest.iter())
    }

    /// A string, or an array of strings.
    fn read(reader: &mut Reader<'a>) -> Result<StringOrList<'a>, Invalid> {
        if reader.peek_token() != Some(b'[') {
            return reader.string().map(StringOrList::one);
        }
        reader.expect(b'[')?;
        let mut list = StringOrList { head: [None, None], rest: Vec::new() };
        if reader.peek_token() == Some(b']') {
            return reader.expect(b']').map(|()| list);
        }
        loop {
            let item = reader.string()?;
            match list.head.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(item),
                None => list.rest.push(item),
            }
            match reader.peek_token() {
                Some(b',') => reader.expect(b',')?,
                _ => return reader.expect(b']').map(|()| list),
            }
        }
    }

    /// The same list, owning its items.
    pub(crate) fn to_owned_list(&self) -> StringOrList<'static> {
        let owned = |item: &Cow<'a, str>| Cow::Owned(item.to_string());
        StringOrList {
            head: self.head.each_ref().map(|item| item.as_ref().map(owned)),
            rest: self.rest.iter().map(owned).collect(),
        }
    }

    fn join(&self) -> String {
        let mut joined = String::new();
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                joined.push(' ');
            }
            joined.push_str(item);
        }
        joined
    }
}

/// The registered claims the policy needs, read in one pass without copying.
#[derive(Default)]
pub(crate) struct Registered<'a> {
    pub(crate) iss: Option<Cow<'a, str>>,
    pub(crate) aud: Option<StringOrList<'a>>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    /// Informational: for tracing, and for [`Claims`] built in the same pass.
    pub(crate) sub: Option<Cow<'a, str>>,
    pub(crate) client_id: Option<Cow<'a, str>>,
    azp: Option<Cow<'a, str>>,
    jti: Option<Cow<'a, str>>,
    /// RFC 9470 §3 (and OIDC Core §2): how, and when, the user authenticated.
    acr: Option<Cow<'a, str>>,
    auth_time: Option<i64>,
    raw_len: usize,
    scope: Option<Cow<'a, str>>,
    scp: Option<StringOrList<'a>>,
    /// `cnf` (RFC 7800): the key the token is bound to, which its client must prove
    /// it holds.
    pub(crate) cnf: Option<Confirmation<'a>>,
}

/// A `cnf` claim (RFC 7800 §3.1): the confirmation methods this crate checks, and
/// whether it names any other.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Confirmation<'a> {
    /// RFC 9449 §6.1: the RFC 7638 thumbprint of the client's DPoP key.
    pub(crate) jkt: Option<Cow<'a, str>>,
    /// RFC 8705 §3.1: the SHA-256 thumbprint of the client's certificate.
    pub(crate) x5t_s256: Option<Cow<'a, str>>,
    /// A method this crate cannot check (`jwk`, `kid`, `jku`, …): the token can never
    /// be accepted.
    pub(crate) others: bool,
}

impl Confirmation<'_> {
    pub(crate) fn to_static(&self) -> Confirmation<'static> {
        let text = |text: &Option<Cow<'_, str>>| text.as_deref().map(|text| Cow::Owned(text.to_owned()));
        Confirmation { jkt: text(&self.jkt), x5t_s256: text(&self.x5t_s256), others: self.others }
    }
}

const NOT_AN_OBJECT: ValidationError = ValidationError::Malformed("payload is not a JSON object");

impl<'a> Registered<'a> {
    /// Reads a claims set (RFC 7519 §7.2: a JSON object). A registered claim of the
    /// wrong type, or one the policy checks given twice (RFC 7519 §4: refused rather
    /// than guessed at), is [`ValidationError::InvalidClaim`]; anything else that is
    /// not a JSON object is [`ValidationError::Malformed`]. Strings that are read must
    /// be UTF-8; other members are checked as JSON only.
    pub(crate) fn parse(json: &'a [u8]) -> Result<Registered<'a>, ValidationError> {
        match std::str::from_utf8(json) {
            Ok(text) => Self::parse_text(text),
            Err(_) => Self::read(Reader::new(json), json.len()),
        }
    }

    /// [`Registered::parse`] of a claims set already known to be text.
    pub(crate) fn parse_text(text: &'a str) -> Result<Registered<'a>, ValidationError> {
        Self::read(Reader::from_text(text), text.len())
    }

    fn read(mut reader: Reader<'a>, raw_len: usize) -> Result<Registered<'a>, ValidationError> {
        let mut out = Registered { raw_len, ..Registered::default() };
        reader.expect(b'{').map_err(|Invalid| NOT_AN_OBJECT)?;
        let mut first = true;
        while reader.next_member(first).map_err(|Invalid| NOT_AN_OBJECT)? {
            first = false;
            let key = reader.string().map_err(|Invalid| NOT_AN_OBJECT)?;
            reader.expect(b':').map_err(|Invalid| NOT_AN_OBJECT)?;
            out.member(&key, &mut reader)?;
        }
        if !reader.at_end() {
            return Err(NOT_AN_OBJECT);
        }
        if out.client_id.is_none() {
            out.client_id = out.azp.take();
        }
        Ok(out)
    }

    /// The same claims, owning their text: what an introspection answer keeps. Every
    /// field is listed, so a claim added later is not forgotten here.
    pub(crate) fn to_static(&self) -> Registered<'static> {
        let text = |text: &Option<Cow<'_, str>>| text.as_deref().map(|text| Cow::Owned(text.to_owned()));
        let list = |list: &Option<StringOrList<'_>>| list.as_ref().map(StringOrList::to_owned_list);
        Registered {
            iss: text(&self.iss),
            aud: list(&self.aud),
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
            sub: text(&self.sub),
            client_id: text(&self.client_id),
            azp: text(&self.azp),
            jti: text(&self.jti),
            acr: text(&self.acr),
            auth_time: self.auth_time,
            raw_len: self.raw_len,
            scope: text(&self.scope),
            scp: list(&self.scp),
            cnf: self.cnf.as_ref().map(Confirmation::to_static),
        }
    }

    /// The value of the member named `key`.
    fn member(&mut self, key: &str, reader: &mut Reader<'a>) -> Result<(), ValidationError> {
        fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), Invalid> {
            match slot.replace(value) {
                None => Ok(()),
                Some(_) => Err(Invalid),
            }
        }
        let (name, read) = match key {
            "iss" => ("iss", reader.string().and_then(|v| once(&mut self.iss, v))),
            "aud" => ("aud", StringOrList::read(reader).and_then(|v| once(&mut self.aud, v))),
            "exp" => ("exp", reader.numeric_date().and_then(|v| once(&mut self.exp, v))),
            "nbf" => ("nbf", reader.numeric_date().and_then(|v| once(&mut self.nbf, v))),
            "iat" => ("iat", reader.numeric_date().and_then(|v| once(&mut self.iat, v))),
            // StringOrURI (RFC 7519 §4.1.2), RFC 9068 §2.2 and OIDC's `azp`: strings,
            // not checked by the policy, so the lexically last wins (RFC 7519 §4;
            // Keycloak sends `sub` twice).
            "sub" => ("sub", reader.string().map(|v| self.sub = Some(v))),
            "client_id" => ("client_id", reader.string().map(|v| self.client_id = Some(v))),
            "azp" => ("azp", reader.string().map(|v| self.azp = Some(v))),
            "jti" => ("jti", reader.string().map(|v| self.jti = Some(v))),
            "scope" => ("scope", reader.string().map(|v| self.scope = Some(v))),
            // Step-up (RFC 9470) decides on them: given once, `auth_time` a number.
            "acr" => ("acr", reader.string().and_then(|v| once(&mut self.acr, v))),
            "auth_time" => ("auth_time", reader.numeric_date().and_then(|v| once(&mut self.auth_time, v))),
            "scp" => ("scp", StringOrList::read(reader).map(|v| self.scp = Some(v))),
            // RFC 7800 §3.1: a JSON object of confirmation methods; checked, never guessed
            // at, so given once.
            "cnf" => ("cnf", confirmation(reader).and_then(|v| once(&mut self.cnf, v))),
            _ => return reader.skip_value().map_err(|Invalid| NOT_AN_OBJECT),
        };
        read.map_err(|Invalid| ValidationError::InvalidClaim(name))
    }
}

/// A `cnf` object (RFC 7800 §3.1). The methods checked are strings given once; any
/// other member is a method this crate cannot check.
fn confirmation<'a>(reader: &mut Reader<'a>) -> Result<Confirmation<'a>, Invalid> {
    fn once<'a>(slot: &mut Option<Cow<'a, str>>, reader: &mut Reader<'a>) -> Result<(), Invalid> {
        let value = reader.string()?;
        if slot.replace(value).is_some() {
            return Err(Invalid);
        }
        Ok(())
    }
    reader.expect(b'{')?;
    let mut cnf = Confirmation::default();
    let mut first = true;
    while reader.next_member(first)? {
        first = false;
        let method = reader.string()?;
        reader.expect(b':')?;
        match &*method {
            "jkt" => once(&mut cnf.jkt, reader)?,
            "x5t#S256" => once(&mut cnf.x5t_s256, reader)?,
            _ => {
                reader.skip_value()?;
                cnf.others = true;
            }
        }
    }
    Ok(cnf)
}

/// The claims of a validated access token: the registered ones typed, the rest kept
/// as JSON and reachable with [`Claims::get`].
///
/// Scopes come from `scope` (a space-separated string, RFC 8693 §4.2 / RFC 9068 §2.2.3)
/// or, failing that, `scp` (a string or an array, as Entra ID and Okta send).
/// `Serialize` writes the token's claims exactly as they were.
///
/// Cheap to clone (one `Arc`): the claims set is kept once, as the token carried it,
/// and the typed claims point into it.
///
/// ```
/// use tower_oauth::Claims;
///
/// let claims: Claims = serde_json::from_str(
///     r#"{"iss":"https://idp","sub":"alice","aud":["api"],"exp":2000000000,
///         "scope":"read write","tenant":"acme"}"#,
/// )?;
/// assert_eq!(claims.subject(), Some("alice"));
/// assert!(claims.scopes().contains("write"));
/// assert_eq!(claims.get::<String>("tenant").as_deref(), Some("acme"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Claims(std::sync::Arc<ClaimsInner>);

struct ClaimsInner {
    /// The claims set as the token carried it (valid JSON).
    raw: String,
    /// The typed claims; string claims as positions in `raw`.
    parts: ClaimsParts,
}

/// A string claim: where it sits in the raw claims set, or (when it had escapes, or
/// is a joined `scp` array) its own text.
enum Text {
    At(u32, u32),
    Owned(Box<str>),
}

impl Text {
    /// Locates `value` in the text starting at `base`: values the parser could borrow
    /// are slices of it; unescaped copies live elsewhere and are kept as they are. Only
    /// addresses are compared; nothing is read through `base`.
    fn of(value: &str, base: *const u8, len: usize) -> Text {
        let start = (value.as_ptr() as usize).wrapping_sub(base as usize);
        // A borrowed value lies within the text; a copy is a separate live allocation,
        // so it cannot overlap it. (`wrapping_sub` puts anything before `base` far out.)
        if start <= len && value.len() <= len - start && len <= u32::MAX as usize {
            Text::At(start as u32, (start + value.len()) as u32)
        } else {
            Text::Owned(value.into())
        }
    }
}

impl ClaimsInner {
    fn text<'s>(&'s self, text: &'s Text) -> &'s str {
        match text {
            Text::At(start, end) => &self.raw[*start as usize..*end as usize],
            Text::Owned(s) => s,
        }
    }

    fn opt<'s>(&'s self, text: &'s Option<Text>) -> Option<&'s str> {
        text.as_ref().map(|t| self.text(t))
    }
}

impl Claims {
    /// `iss`: who issued the token.
    pub fn issuer(&self) -> Option<&str> {
        self.0.opt(&self.0.parts.iss)
    }

    /// `sub`: whom the token is about (a user, or the client itself).
    pub fn subject(&self) -> Option<&str> {
        self.0.opt(&self.0.parts.sub)
    }

    /// `aud`: the audiences, whether the token sent a string or an array.
    pub fn audience(&self) -> impl Iterator<Item = &str> {
        self.0.parts.aud.0.iter().flatten().chain(self.0.parts.aud.1.iter()).map(|t| self.0.text(t))
    }

    /// `exp`, in seconds since the epoch.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.parts.exp
    }

    /// `nbf`, in seconds since the epoch.
    pub fn not_before(&self) -> Option<i64> {
        self.0.parts.nbf
    }

    /// `iat`, in seconds since the epoch.
    pub fn issued_at(&self) -> Option<i64> {
        self.0.parts.iat
    }

    /// `jti`: the token's unique id.
    pub fn token_id(&self) -> Option<&str> {
        self.0.opt(&self.0.parts.jti)
    }

    /// The OAuth client the token was issued to: `client_id` (RFC 9068 §2.2), or
    /// `azp` when the issuer sends only that (Keycloak, OIDC).
    pub fn client_id(&self) -> Option<&str> {
        self.0.opt(&self.0.parts.client_id)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> Scopes<'_> {
        Scopes(self.0.opt(&self.0.parts.scope).unwrap_or(""))
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().contains(scope)
    }

    /// `acr`: the authentication context class the user authenticated with (OIDC Core
    /// §2, RFC 9470 §3), as the authorization server names it.
    pub fn acr(&self) -> Option<&str> {
        self.0.opt(&self.0.parts.acr)
    }

    /// `auth_time`: when the user authenticated, in seconds since the epoch (OIDC Core
    /// §2, RFC 9470 §3).
    pub fn auth_time(&self) -> Option<i64> {
        self.0.parts.auth_time
    }

    /// Any claim, deserialized on demand; `None` when absent or of another type.
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        #[derive(Deserialize)]
        struct Any<'a>(#[serde(borrow)] std::collections::HashMap<Cow<'a, str>, &'a RawValue>);
        let Any(map) = serde_json::from_str(&self.0.raw).ok()?;
        serde_json::from_str(map.get(name)?.get()).ok()
    }

    /// The claims as the token carried them, as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0.raw
    }

    /// Builds the claims from the validator's own pass over `raw` (which `registered`
    /// borrows from): no second parse.
    pub(crate) fn from_registered(registered: &Registered<'_>, raw: &str) -> Claims {
        ClaimsParts::new(registered, raw.as_ptr()).with_raw(raw.to_owned())
    }
}

/// Everything [`Claims`] needs but the claims set itself: string claims as positions
/// in it. Lets the validator drop its borrow of the payload and then move the payload
/// in, without a copy.
pub(crate) struct ClaimsParts {
    iss: Option<Text>,
    sub: Option<Text>,
    /// The first two apart, as in [`StringOrList`].
    aud: ([Option<Text>; 2], Vec<Text>),
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<Text>,
    client_id: Option<Text>,
    scope: Option<Text>,
    acr: Option<Text>,
    auth_time: Option<i64>,
    raw_len: usize,
}

impl ClaimsParts {
    /// `base` is where the text `registered` was parsed from starts.
    pub(crate) fn new(registered: &Registered<'_>, base: *const u8) -> ClaimsParts {
        let text = |v: &Cow<'_, str>| Text::of(v, base, registered.raw_len);
        let opt = |v: &Option<Cow<'_, str>>| v.as_ref().map(text);
        let scope = match (&registered.scope, &registered.scp) {
            (Some(scope), _) => Some(text(scope)),
            (None, Some(list)) => Some(Text::Owned(list.join().into())),
            (None, None) => None,
        };
        let aud = match &registered.aud {
            Some(list) => {
                (list.head.each_ref().map(|item| item.as_ref().map(text)), list.rest.iter().map(text).collect())
            }
            None => ([None, None], Vec::new()),
        };
        ClaimsParts {
            iss: opt(&registered.iss),
            sub: opt(&registered.sub),
            aud,
            exp: registered.exp,
            nbf: registered.nbf,
            iat: registered.iat,
            jti: opt(&registered.jti),
            client_id: opt(&registered.client_id),
            scope,
            acr: opt(&registered.acr),
            auth_time: registered.auth_time,
            raw_len: registered.raw_len,
        }
    }

    /// Attaches the claims set the positions refer to: the same text, moved or copied.
    pub(crate) fn with_raw(self, raw: String) -> Claims {
        debug_assert_eq!(raw.len(), self.raw_len);
        Claims(std::sync::Arc::new(ClaimsInner { raw, parts: self }))
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.issuer())
            .field("sub", &self.subject())
            .field("aud", &self.audience().collect::<Vec<_>>())
            .field("exp", &self.0.parts.exp)
            .field("client_id", &self.client_id())
            .field("scopes", &self.scopes())
            .finish_non_exhaustive()
    }
}

impl<'de> Deserialize<'de> for Claims {
    /// Reads the claims with the validator's own rules (duplicate `iss`, `aud`, `exp`,
    /// `nbf` or `iat` are refused; for other members the lexically last wins, RFC 7519 §4).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let registered = Registered::parse(raw.get().as_bytes()).map_err(de::Error::custom)?;
        Ok(Claims::from_registered(&registered, raw.get()))
    }
}

impl Serialize for Claims {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Already valid JSON: written out as it is.
        let raw: &RawValue = serde_json::from_str(&self.0.raw).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// The scopes a token grants (RFC 6749 §3.3 scope tokens, which never contain spaces).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes<'a>(&'a str);

impl<'a> Scopes<'a> {
    /// Whether `scope` is granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// Whether every one of `scopes` is granted.
    pub fn contains_all<'s>(&self, scopes: impl IntoIterator<Item = &'s str>) -> bool {
        scopes.into_iter().all(|s| self.contains(s))
    }

    /// Each scope.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0.split_ascii_whitespace()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The scopes as one space-separated string.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Debug for Scopes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_claims_name_the_bad_claim() {
        assert!(matches!(Registered::parse(br#"{"exp":"soon"}"#), Err(ValidationError::InvalidClaim("exp"))));
        assert!(matches!(Registered::parse(br#"{"aud":5}"#), Err(ValidationError::InvalidClaim("aud"))));
        assert!(matches!(Registered::parse(br#"{"iss":"a","iss":"b"}"#), Err(ValidationError::InvalidClaim("iss"))));
        assert!(matches!(Registered::parse(br#"[1]"#), Err(ValidationError::Malformed(_))));
        assert!(matches!(Registered::parse(br#"{"a":1} x"#), Err(ValidationError::Malformed(_))));
        let r = Registered::parse(br#"{"iss":"i\u0073s","aud":["a","b"],"exp":1.9,"other":{"x":[1]}}"#).unwrap();
        assert_eq!(r.iss.as_deref(), Some("iss"));
        assert_eq!(r.aud.unwrap().iter().map(|s| s.as_ref()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.exp, Some(1));
    }

    #[test]
    fn a_confirmation_claim_names_the_key_the_token_is_bound_to() {
        let cnf = |json: &str| Registered::parse(json.as_bytes()).map(|r| r.cnf.map(|c| c.to_static()));
        let jkt = cnf(r#"{"cnf":{"jkt":"abc"}}"#).unwrap().unwrap();
        assert_eq!((jkt.jkt.as_deref(), jkt.x5t_s256.as_deref(), jkt.others), (Some("abc"), None, false));
        let both = cnf(r#"{"cnf":{"x5t#S256":"x","other":[1],"jkt":"j"}}"#).unwrap().unwrap();
        assert_eq!((both.jkt.as_deref(), both.x5t_s256.as_deref(), both.others), (Some("j"), Some("x"), true));
        assert_eq!(cnf(r#"{"cnf":{}}"#).unwrap(), Some(Confirmation::default()));
        assert_eq!(cnf(r#"{"sub":"s"}"#).unwrap(), None);
        for invalid in [
            r#"{"cnf":"jkt"}"#,
            r#"{"cnf":{"jkt":"a"},"cnf":{}}"#,
            r#"{"cnf":{"jkt":1}}"#,
            r#"{"cnf":{"jkt":"a","jkt":"a"}}"#,
            r#"{"cnf":{"x5t#S256":null}}"#,
        ] {
            assert!(matches!(cnf(invalid), Err(ValidationError::InvalidClaim("cnf"))), "{invalid}");
        }
    }

    #[test]
    fn text_that_is_not_utf8_fails_where_it_always_did() {
        assert!(matches!(Registered::parse(b"{\"iss\":\"\xff\"}"), Err(ValidationError::InvalidClaim("iss"))));
        assert!(matches!(Registered::parse(b"{\"x\xff\":1}"), Err(ValidationError::Malformed(_))));
        // An ignored member is not read, as before: the claims set as a whole is
        // checked when it becomes `Claims`.
        let r = Registered::parse(b"{\"iss\":\"\xc3\xa9\",\"other\":\"\xff\"}").unwrap();
        assert_eq!(r.iss.as_deref(), Some("\u{e9}"));
    }

    /// The claims as `serde_json` reads them, the reference the reader is held to:
    /// registered claims typed, duplicates of the checked ones refused, anything else
    /// only required to be JSON.
    #[derive(Debug, PartialEq)]
    struct Reference {
        strings: Vec<(&'static str, Option<String>)>,
        lists: Vec<(&'static str, Option<Vec<String>>)>,
        dates: [Option<i64>; 3],
        cnf: Option<(Option<String>, Option<String>, bool)>,
    }

    fn reference(json: &[u8]) -> Option<Reference> {
        use serde_json::{Map, Value};
        const READ: [&str; 12] =
            ["iss", "aud", "exp", "nbf", "iat", "sub", "client_id", "azp", "jti", "scope", "scp", "cnf"];
        // Duplicates survive in a list of pairs; a map would keep the last one silently.
        struct Pairs(Vec<(String, Value)>);
        impl<'de> Deserialize<'de> for Pairs {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Pairs;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                        let mut pairs = Vec::new();
                        // Members the policy does not read are only required to be JSON.
                        while let Some(name) = map.next_key::<String>()? {
                            let read = READ.contains(&name.as_str());
                            let value = if name == "cnf" {
                                // The checked methods must be strings given once; the
                                // other members are only required to be JSON.
                                let methods = map.next_value::<Methods>()?.0;
                                let mut checked = Map::new();
                                let mut others = false;
                                for (method, value) in methods {
                                    if method == "jkt" || method == "x5t#S256" {
                                        if !value.is_string() || checked.contains_key(&method) {
                                            return Err(de::Error::custom("invalid cnf"));
                                        }
                                        checked.insert(method, value);
                                    } else {
                                        others = true;
                                    }
                                }
                                checked.insert("others".into(), Value::Bool(others));
                                Value::Object(checked)
                            } else if read {
                                map.next_value()?
                            } else {
                                map.next_value::<de::IgnoredAny>().map(|_| Value::Null)?
                            };
                            pairs.push((name, value));
                        }
                        Ok(Pairs(pairs))
                    }
                }
                d.deserialize_map(V)
            }
        }
        /// A `cnf` object's members in order, duplicates kept.
        struct Methods(Vec<(String, Value)>);
        impl<'de> Deserialize<'de> for Methods {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Methods;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Methods, A::Error> {
                        let mut members = Vec::new();
                        while let Some(name) = map.next_key::<String>()? {
                            let value = if name == "jkt" || name == "x5t#S256" {
                                map.next_value()?
                            } else {
                                map.next_value::<de::IgnoredAny>().map(|_| Value::Null)?
                            };
                            members.push((name, value));
                        }
                        Ok(Methods(members))
                    }
                }
                d.deserialize_map(V)
            }
        }
        let Pairs(pairs) = serde_json::from_slice(json).ok()?;
        let mut last = Map::new();
        for (name, value) in &pairs {
            let checked = ["iss", "aud", "exp", "nbf", "iat", "cnf"].contains(&name.as_str());
            if checked && last.contains_key(name) {
                return None;
            }
            last.insert(name.clone(), value.clone());
        }
        let string = |name: &'static str| match last.get(name) {
            None => Some((name, None)),
            Some(Value::String(s)) => Some((name, Some(s.clone()))),
            Some(_) => None,
        };
        let list = |name: &'static str| match last.get(name) {
            None => Some((name, None)),
            Some(Value::String(s)) => Some((name, Some(vec![s.clone()]))),
            Some(Value::Array(items)) => {
                let items: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
                Some((name, Some(items?)))
            }
            Some(_) => None,
        };
        let date = |name: &str| match last.get(name) {
            None => Some(None),
            Some(Value::Number(n)) => {
                Some(Some(n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)).unwrap_or_else(|| {
                    // `as` saturates.
                    n.as_f64().map_or(0, |f| f.floor() as i64)
                })))
            }
            Some(_) => None,
        };
        let mut strings: Vec<_> =
            ["iss", "sub", "client_id", "azp", "jti", "scope"].into_iter().map(string).collect::<Option<_>>()?;
        if strings[2].1.is_none() {
            strings[2].1 = strings[3].1.take();
        }
        Some(Reference {
            strings,
            lists: ["aud", "scp"].into_iter().map(list).collect::<Option<_>>()?,
            dates: [date("exp")?, date("nbf")?, date("iat")?],
            cnf: last.get("cnf").map(|cnf| {
                let text = |name: &str| cnf.get(name).and_then(Value::as_str).map(str::to_owned);
                (text("jkt"), text("x5t#S256"), cnf["others"] == Value::Bool(true))
            }),
        })
    }

    fn read(json: &[u8]) -> Option<Reference> {
        let r = Registered::parse(json).ok()?;
        let s = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_owned);
        let l = |v: &Option<StringOrList<'_>>| v.as_ref().map(|l| l.iter().map(|i| i.to_string()).collect());
        Some(Reference {
            strings: vec![
                ("iss", s(&r.iss)),
                ("sub", s(&r.sub)),
                ("client_id", s(&r.client_id)),
                ("azp", s(&r.azp)),
                ("jti", s(&r.jti)),
                ("scope", s(&r.scope)),
            ],
            lists: vec![("aud", l(&r.aud)), ("scp", l(&r.scp))],
            dates: [r.exp, r.nbf, r.iat],
            cnf: r
                .cnf
                .map(|c| (c.jkt.as_deref().map(str::to_owned), c.x5t_s256.as_deref().map(str::to_owned), c.others)),
        })
    }

    const SEEDS: [&str; 5] = [
        r#"{"iss":"https://idp/realms/a","sub":"u","aud":["api","account"],"exp":1700000000,"iat":1.5,"nbf":-3,"scope":"a b","azp":"c","realm_access":{"roles":["x",{"y":[null,true,false]}]},"n":-1.25e-3}"#,
        r#" { "iss" : "i\u0073s" , "aud" : "a\"b" , "scp" : [ "s1" , "s\ud83d\ude00" ] , "client_id" : "cl" , "jti" : "\/j" , "x" : [ [ ] , { } ] } "#,
        r#"{"sub":"a","sub":"b","exp":99999999999999999999,"nbf":-99999999999999999999,"iat":1E3,"o":"\u0000\t"}"#,
        r#"{"aud":[],"scp":"one","iss":"","exp":0,"deep":[[[[[{"a":[[{}]]}]]]]]}"#,
        r#"{"iss":"i","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I","x5t#S256":"a"},"c":{}}"#,
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Random edits of real-looking claims sets: the reader accepts what the
        /// reference accepts, and reads the same values.
        #[test]
        fn the_reader_agrees_with_serde_json(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0..3u8, proptest::sample::select(
                    b"{}[]\",:0123456789.eE+-tfnul \\/\x01\x7f\xc3\xa9\xffabisudxpcjt".to_vec()
                )),
                0..4,
            ),
        ) {
            let mut json = SEEDS[seed].as_bytes().to_vec();
            for (at, kind, byte) in edits {
                let i = at.index(json.len() + 1);
                match kind {
                    0 => json.insert(i, byte),
                    1 if i < json.len() => { json.remove(i); }
                    _ if i < json.len() => json[i] = byte,
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(read(&json), reference(&json), "{}", String::from_utf8_lossy(&json));
        }
    }

    #[test]
    fn the_seeds_read_as_the_reference_reads_them() {
        for seed in SEEDS {
            let read = read(seed.as_bytes());
            assert!(read.is_some(), "{seed}");
            assert_eq!(read, reference(seed.as_bytes()), "{seed}");
        }
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let c: Claims = serde_json::from_str(r#"{"scp":["a","b"]}"#).unwrap();
        assert!(c.scopes().contains_all(["a", "b"]));
        let c: Claims = serde_json::from_str(r#"{"scp":"a"}"#).unwrap();
        assert!(c.has_scope("a"));
        let c: Claims = serde_json::from_str(r#"{"scope":"x  y","scp":["a"]}"#).unwrap();
        assert_eq!(c.scopes().iter().collect::<Vec<_>>(), ["x", "y"]);
        assert!(!c.has_scope("a"));
        assert!(!c.has_scope("x y"));
    }

    #[test]
    fn string_claims_point_into_the_raw_text_or_own_their_unescaped_form() {
        let json = r#"{"iss":"https:\/\/idp","sub":"al\u0069ce","aud":["a","b\"c"],"jti":"j","azp":"cl"}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(c.issuer(), Some("https://idp"));
        assert_eq!(c.subject(), Some("alice"));
        assert_eq!(c.audience().collect::<Vec<_>>(), ["a", "b\"c"]);
        assert_eq!(c.token_id(), Some("j"));
        assert_eq!(c.client_id(), Some("cl"));
        assert!(matches!(c.0.parts.jti, Some(Text::At(..))));
        assert!(matches!(c.0.parts.sub, Some(Text::Owned(_))));
    }

    #[test]
    fn claims_serialize_as_they_came() {
        let json = r#"{"sub":"s","azp":"client","n":[1,2]}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), json);
        assert_eq!(c.client_id(), Some("client"));
        assert_eq!(c.get::<Vec<u8>>("n"), Some(vec![1, 2]));
        assert_eq!(c.get::<String>("n"), None);
    }
}
