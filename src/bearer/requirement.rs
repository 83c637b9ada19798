//! What a route asks of the user's authentication (RFC 9470): the requirement, what a
//! token fell short of, and the claims it is checked against. The layer that applies it
//! is in `step_up`.

use std::sync::Arc;
use std::time::Duration;

use crate::Claims;

/// Claims that tell how and when the user authenticated. Implement it for your own
/// claims type to use [`StepUpLayer`](super::StepUpLayer) with it.
pub trait HasAuthentication {
    /// `acr`: the authentication context class reference.
    fn acr(&self) -> Option<&str>;
    /// `auth_time`: when the user authenticated, in seconds since the epoch.
    fn auth_time(&self) -> Option<i64>;
}

impl HasAuthentication for Claims {
    fn acr(&self) -> Option<&str> {
        Claims::acr(self)
    }

    fn auth_time(&self) -> Option<i64> {
        Claims::auth_time(self)
    }
}

/// What a route asks of the user's authentication (RFC 9470 §3): one of some `acr`
/// values, an `auth_time` no older than `max_age`, or both.
///
/// A token without `acr` falls short of any `acr` requirement, and one without
/// `auth_time` of any `max_age`. The challenge carries every requirement set, so the
/// client's new authentication satisfies them all:
///
/// ```text
/// HTTP/1.1 401 Unauthorized
/// WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="urn:example:mfa", max_age="300"
/// ```
///
/// ```
/// use std::time::Duration;
/// use tower_oauth::bearer::StepUpRequirement;
///
/// let recent_mfa = StepUpRequirement::new()
///     .acr_values(["urn:example:mfa", "urn:example:hardware-key"])
///     .max_age(Duration::from_secs(300));
/// assert_eq!(recent_mfa.acr_values_param().as_deref(), Some("urn:example:mfa urn:example:hardware-key"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct StepUpRequirement {
    /// Acceptable `acr` values; empty for no requirement.
    acr_values: Arc<[Box<str>]>,
    /// Seconds.
    max_age: Option<u64>,
}

/// Which part of a [`StepUpRequirement`] a token fell short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shortfall {
    /// Its `acr` is missing or not one of the acceptable values.
    Acr,
    /// Its `auth_time` is missing or older than `max_age`.
    MaxAge,
}

impl StepUpRequirement {
    /// Requires nothing yet.
    pub fn new() -> Self {
        StepUpRequirement::default()
    }

    /// Accepts a token whose `acr` is one of `values`, compared exactly.
    ///
    /// The challenge joins them with spaces (RFC 9470 §3), so a value should hold no
    /// space, `"` or `\`; such characters are sent as `?`, and the value still has to
    /// match exactly.
    pub fn acr_values<I, T>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.acr_values = values.into_iter().map(|v| v.as_ref().into()).collect();
        self
    }

    /// Accepts a token whose `auth_time` is at most `max_age` old, in whole seconds.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age.as_secs());
        self
    }

    /// The acceptable `acr` values as the challenge's `acr_values` (space-separated),
    /// or `None` when any `acr` will do.
    pub fn acr_values_param(&self) -> Option<String> {
        (!self.acr_values.is_empty()).then(|| self.acr_values.join(" "))
    }

    /// The required authentication age in seconds, or `None`.
    pub fn max_age_secs(&self) -> Option<u64> {
        self.max_age
    }

    /// Whether the requirement asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.acr_values.is_empty() && self.max_age.is_none()
    }

    /// What `claims` fall short of as of `now` (seconds since the epoch), if anything;
    /// an `auth_time` in the future counts as now.
    pub(crate) fn shortfall_at<C: HasAuthentication>(&self, claims: &C, now: i64) -> Option<Shortfall> {
        if !self.acr_values.is_empty() && !claims.acr().is_some_and(|acr| self.acr_values.iter().any(|ok| **ok == *acr))
        {
            Some(Shortfall::Acr)
        } else if let Some(max_age) = self.max_age
            && claims.auth_time().is_none_or(|at| now.saturating_sub(at) > i64::try_from(max_age).unwrap_or(i64::MAX))
        {
            Some(Shortfall::MaxAge)
        } else {
            None
        }
    }
}
