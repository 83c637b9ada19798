//! Claims: the registered ones the policy checks, and the ready [`Claims`] type.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ValidationError;

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

impl<'de: 'a, 'a> Deserialize<'de> for StringOrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = StringOrList<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOrList::one(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrList::one(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = StringOrList { head: [None, None], rest: Vec::new() };
                while let Some(Str(item)) = seq.next_element()? {
                    match list.head.iter_mut().find(|slot| slot.is_none()) {
                        Some(slot) => *slot = Some(item),
                        None => list.rest.push(item),
                    }
                }
                Ok(list)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Seconds since the epoch (RFC 7519 §2 NumericDate); fractions are truncated.
#[derive(Clone, Copy)]
pub(crate) struct NumericDate(pub(crate) i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // `as` saturates, which is the right reading of an absurd date.
                Ok(NumericDate(v.floor() as i64))
            }
        }
        d.deserialize_any(V)
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
    raw_len: usize,
    scope: Option<Cow<'a, str>>,
    scp: Option<StringOrList<'a>>,
}

impl<'a> Registered<'a> {
    pub(crate) fn parse(json: &'a [u8]) -> Result<Registered<'a>, ValidationError> {
        // Text checked once as a whole is read without checking each string again; any
        // other input takes the byte reader, which fails exactly where it always did.
        match std::str::from_utf8(json) {
            Ok(text) => Self::parse_text(text),
            Err(_) => {
                Self::parse_with(json, |field| Self::read(&mut serde_json::Deserializer::from_slice(json), field))
            }
        }
    }

    /// [`Registered::parse`] of a payload already known to be UTF-8.
    pub(crate) fn parse_text(text: &'a str) -> Result<Registered<'a>, ValidationError> {
        Self::parse_with(text.as_bytes(), |field| Self::read(&mut serde_json::Deserializer::from_str(text), field))
    }

    fn parse_with(
        json: &'a [u8],
        read: impl FnOnce(&Cell<Option<&'static str>>) -> serde_json::Result<Registered<'a>>,
    ) -> Result<Registered<'a>, ValidationError> {
        let field = Cell::new(None);
        let parsed = read(&field);
        let parsed = parsed.map(|mut r| {
            r.raw_len = json.len();
            r
        });
        parsed.map_err(|_| match field.get() {
            Some(name) => ValidationError::InvalidClaim(name),
            None => ValidationError::Malformed("payload is not a JSON object"),
        })
    }

    fn read<R: serde_json::de::Read<'a>>(
        de: &mut serde_json::Deserializer<R>,
        field: &Cell<Option<&'static str>>,
    ) -> serde_json::Result<Registered<'a>> {
        let registered = RegisteredSeed { field }.deserialize(&mut *de)?;
        de.end()?;
        Ok(registered)
    }
}

/// Remembers which claim was being read, so that an error names it.
struct RegisteredSeed<'c> {
    field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for RegisteredSeed<'_> {
    type Value = Registered<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RegisteredSeed<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims set")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
            // RFC 7519 §4: duplicate claim names are rejected rather than guessed at.
            match slot.replace(value) {
                None => Ok(()),
                Some(_) => Err(E::custom("duplicate claim")),
            }
        }
        let mut out = Registered::default();
        while let Some(Str(key)) = map.next_key()? {
            match &*key {
                "iss" => {
                    self.field.set(Some("iss"));
                    let Str(v) = map.next_value()?;
                    once(&mut out.iss, v)?;
                }
                "aud" => {
                    self.field.set(Some("aud"));
                    once(&mut out.aud, map.next_value()?)?;
                }
                "exp" => {
                    self.field.set(Some("exp"));
                    once(&mut out.exp, map.next_value::<NumericDate>()?.0)?;
                }
                "nbf" => {
                    self.field.set(Some("nbf"));
                    once(&mut out.nbf, map.next_value::<NumericDate>()?.0)?;
                }
                "iat" => {
                    self.field.set(Some("iat"));
                    once(&mut out.iat, map.next_value::<NumericDate>()?.0)?;
                }
                // StringOrURI (RFC 7519 §4.1.2), RFC 9068 §2.2 and OIDC's `azp`: strings,
                // not checked by the policy, so the lexically last wins (RFC 7519 §4;
                // Keycloak sends `sub` twice).
                "sub" | "client_id" | "azp" | "jti" | "scope" => {
                    let (name, slot) = match &*key {
                        "sub" => ("sub", &mut out.sub),
                        "client_id" => ("client_id", &mut out.client_id),
                        "azp" => ("azp", &mut out.azp),
                        "jti" => ("jti", &mut out.jti),
                        _ => ("scope", &mut out.scope),
                    };
                    self.field.set(Some(name));
                    let Str(v) = map.next_value()?;
                    *slot = Some(v);
                }
                "scp" => {
                    self.field.set(Some("scp"));
                    out.scp = Some(map.next_value()?);
                }
                _ => {
                    self.field.set(None);
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.field.set(None);
        if out.client_id.is_none() {
            out.client_id = out.azp.take();
        }
        Ok(out)
    }
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
    fn text_that_is_not_utf8_fails_where_it_always_did() {
        assert!(matches!(Registered::parse(b"{\"iss\":\"\xff\"}"), Err(ValidationError::InvalidClaim("iss"))));
        assert!(matches!(Registered::parse(b"{\"x\xff\":1}"), Err(ValidationError::Malformed(_))));
        // An ignored member is not read, as before: the claims set as a whole is
        // checked when it becomes `Claims`.
        let r = Registered::parse(b"{\"iss\":\"\xc3\xa9\",\"other\":\"\xff\"}").unwrap();
        assert_eq!(r.iss.as_deref(), Some("\u{e9}"));
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
