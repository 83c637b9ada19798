//! What the token endpoint remembers: authorization codes and refresh-token families.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::key::random_id;

/// RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is
/// RECOMMENDED."
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// No `Debug`: codes and refresh tokens are secrets.
#[derive(Default)]
pub(crate) struct Grants {
    codes: HashMap<String, Code>,
    refresh_tokens: HashMap<String, RefreshToken>,
    revoked_families: HashSet<u64>,
    next_family: u64,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scope: String,
    subject: String,
    issued: Instant,
    /// The refresh-token family the code was exchanged for, once it was.
    redeemed: Option<u64>,
}

struct RefreshToken {
    client_id: String,
    scope: String,
    subject: String,
    family: u64,
    used: bool,
}

/// What a successful code or refresh-token exchange grants.
pub(crate) struct Grant {
    pub(crate) subject: String,
    /// The scope of the access token (space-separated; may be empty).
    pub(crate) scope: String,
    pub(crate) refresh_token: String,
}

/// Why an exchange failed, as an RFC 6749 §5.2 error code and description.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GrantError {
    InvalidGrant(&'static str),
    InvalidScope(&'static str),
}

impl Grants {
    pub(crate) fn issue_code(&mut self, client_id: &str, redirect_uri: &str, scope: &str, subject: &str) -> String {
        let code = random_id();
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                scope: scope.to_owned(),
                subject: subject.to_owned(),
                issued: Instant::now(),
                redeemed: None,
            },
        );
        code
    }

    /// Starts a new refresh-token family.
    pub(crate) fn issue_refresh_token(&mut self, client_id: &str, scope: &str, subject: &str) -> String {
        let family = self.next_family;
        self.next_family += 1;
        self.add_refresh_token(client_id, scope, subject, family)
    }

    fn add_refresh_token(&mut self, client_id: &str, scope: &str, subject: &str, family: u64) -> String {
        let token = random_id();
        self.refresh_tokens.insert(
            token.clone(),
            RefreshToken {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                subject: subject.to_owned(),
                family,
                used: false,
            },
        );
        token
    }

    /// RFC 6749 §4.1.3: exchanges a one-time code issued to `client_id` for
    /// `redirect_uri`.
    pub(crate) fn redeem_code(&mut self, client_id: &str, code: &str, redirect_uri: &str) -> Result<Grant, GrantError> {
        let record = self.codes.get(code).ok_or(GrantError::InvalidGrant("unknown authorization code"))?;
        if record.client_id != client_id {
            return Err(GrantError::InvalidGrant("authorization code was issued to another client"));
        }
        if let Some(family) = record.redeemed {
            // RFC 6749 §4.1.2: a reused code SHOULD revoke the tokens issued for it.
            self.revoked_families.insert(family);
            return Err(GrantError::InvalidGrant("authorization code was already used"));
        }
        if record.issued.elapsed() > CODE_LIFETIME {
            return Err(GrantError::InvalidGrant("authorization code expired"));
        }
        if record.redirect_uri != redirect_uri {
            return Err(GrantError::InvalidGrant("redirect_uri does not match the authorization request"));
        }
        let (scope, subject) = (record.scope.clone(), record.subject.clone());
        let family = self.next_family;
        self.next_family += 1;
        if let Some(record) = self.codes.get_mut(code) {
            record.redeemed = Some(family);
        }
        let refresh_token = self.add_refresh_token(client_id, &scope, &subject, family);
        Ok(Grant { subject, scope, refresh_token })
    }

    /// RFC 6749 §6 with rotation: the presented token is spent and a new one of the
    /// same family and scope is returned. Presenting a spent token revokes the whole
    /// family, because either the client or an attacker holds a stolen copy
    /// (RFC 9700 §4.14.2).
    pub(crate) fn refresh(
        &mut self,
        client_id: &str,
        token: &str,
        requested_scope: Option<&str>,
    ) -> Result<Grant, GrantError> {
        let record = self.refresh_tokens.get_mut(token).ok_or(GrantError::InvalidGrant("unknown refresh token"))?;
        if record.client_id != client_id {
            return Err(GrantError::InvalidGrant("refresh token was issued to another client"));
        }
        if self.revoked_families.contains(&record.family) {
            return Err(GrantError::InvalidGrant("refresh token was revoked"));
        }
        if record.used {
            self.revoked_families.insert(record.family);
            return Err(GrantError::InvalidGrant("refresh token was already used"));
        }
        // RFC 6749 §6: a requested scope must not include any scope not originally
        // granted.
        let scope = match requested_scope {
            Some(requested) => {
                let original: HashSet<&str> = record.scope.split(' ').collect();
                if !requested.split(' ').all(|s| original.contains(s)) {
                    return Err(GrantError::InvalidScope("scope exceeds the original grant"));
                }
                requested.to_owned()
            }
            None => record.scope.clone(),
        };
        record.used = true;
        let (original_scope, subject, family) = (record.scope.clone(), record.subject.clone(), record.family);
        // RFC 6749 §6: the new refresh token keeps the scope of the one it replaces.
        let refresh_token = self.add_refresh_token(client_id, &original_scope, &subject, family);
        Ok(Grant { subject, scope, refresh_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_rotates_and_its_reuse_revokes_the_family() {
        let mut grants = Grants::default();
        let first = grants.issue_refresh_token("c", "read write", "alice");
        let second = grants.refresh("c", &first, None).map(|g| g.refresh_token);
        let Ok(second) = second else { panic!("first refresh failed: {second:?}") };
        assert_eq!(
            grants.refresh("c", &first, None).map(|g| g.subject),
            Err(GrantError::InvalidGrant("refresh token was already used"))
        );
        assert_eq!(
            grants.refresh("c", &second, None).map(|g| g.subject),
            Err(GrantError::InvalidGrant("refresh token was revoked"))
        );
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen_the_scope() {
        let mut grants = Grants::default();
        let token = grants.issue_refresh_token("c", "read write", "alice");
        assert_eq!(
            grants.refresh("c", &token, Some("read admin")).map(|g| g.scope),
            Err(GrantError::InvalidScope("scope exceeds the original grant"))
        );
        let narrowed = grants.refresh("c", &token, Some("read"));
        assert_eq!(narrowed.as_ref().map(|g| g.scope.as_str()), Ok("read"));
    }

    #[test]
    fn another_clients_refresh_token_is_rejected_without_spending_it() {
        let mut grants = Grants::default();
        let token = grants.issue_refresh_token("c", "read", "alice");
        assert!(grants.refresh("other", &token, None).is_err());
        assert!(grants.refresh("c", &token, None).is_ok());
    }

    #[test]
    fn a_reused_code_revokes_the_refresh_token_it_produced() {
        let mut grants = Grants::default();
        let code = grants.issue_code("c", "https://app/cb", "openid", "alice");
        assert!(grants.redeem_code("c", &code, "https://app/other").is_err());
        let refresh = grants.redeem_code("c", &code, "https://app/cb").map(|g| g.refresh_token);
        assert!(refresh.is_ok());
        assert!(grants.redeem_code("c", &code, "https://app/cb").is_err());
        if let Ok(refresh) = refresh {
            assert!(grants.refresh("c", &refresh, None).is_err());
        }
    }
}
