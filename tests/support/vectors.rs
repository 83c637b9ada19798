//! The conformance vectors in `tests/vectors/` (sources, commits and licences in its
//! README), for `tests/vectors.rs` (JWS, JWK) and `tests/jwe_vectors.rs` (JWE): reading the
//! files, a vector's keys, and comparing every Wycheproof vector's label with what we do
//! against an explicit table of the disagreements.
//!
//! A disagreement missing from its table fails, and so does a table entry that no longer
//! disagrees (or disagrees differently), so the tables cannot rot.

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tower_oauth::{KeySet, ValidationError};

// ---------------------------------------------------------------------------------------
// Reading the files (no vector data lives in the tests, only expectations about it)
// ---------------------------------------------------------------------------------------

/// `tests/vectors/`, in the repository: a clone alone has everything the tests read.
pub(crate) fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub(crate) fn load(relative: &str) -> Value {
    let path = vectors_dir().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The `*.json` files of a vector folder, sorted by name.
pub(crate) fn json_files(folder: &str) -> Vec<String> {
    let dir = vectors_dir().join(folder);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name().into_string().expect("a UTF-8 file name"))
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

pub(crate) fn str_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer}"))
}

/// The JWKs in a vector's key slot: one JWK, a JWK Set, or a list of JWKs (RFC 7520 §4.8).
pub(crate) fn jwk_list(key: &Value) -> Vec<Value> {
    match key {
        Value::Array(list) => list.clone(),
        Value::Object(object) if object.contains_key("keys") => {
            object["keys"].as_array().expect("`keys` is an array").clone()
        }
        single => vec![single.clone()],
    }
}

/// A vector's key slot as a JWK Set document.
pub(crate) fn jwks(key: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": jwk_list(key) })).expect("serializable")
}

/// The keys a vector configures, as a [`KeySet`].
///
/// A vector's key is configured by the caller, not fetched from an issuer, so a set that
/// holds an `oct` key is loaded through the trusted entry point (symmetric keys are
/// skipped otherwise). Everything else goes through the public-key entry point. Private
/// members (`d`, `p`, …) are ignored by the parser.
pub(crate) fn key_set(key: &Value) -> KeySet {
    let symmetric = jwk_list(key).iter().any(|k| k["kty"] == "oct");
    let document = jwks(key);
    let parsed = if symmetric { KeySet::from_jwks_trusted(&document) } else { KeySet::from_jwks(&document) };
    parsed.expect("a JWK Set document")
}

/// The public members of a vector's key(s), as a [`KeySet`] loaded as a remote JWKS would
/// be (private members are ignored by the parser, so the key slot can be passed as is).
pub(crate) fn untrusted_key_set(key: &Value) -> KeySet {
    KeySet::from_jwks(&jwks(key)).expect("a JWK Set document")
}

/// A token as a vector gives it: a string (normally compact; Wycheproof also puts a JSON
/// serialization in a string) or a JSON serialization object, handed over as its text.
pub(crate) fn token_text(token: &Value) -> String {
    match token {
        Value::String(token) => token.clone(),
        object => object.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Wycheproof: labels, what we do, and the comparison
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Valid,
    Invalid,
    Acceptable,
}

impl Label {
    /// A Wycheproof test's `result`.
    pub(crate) fn of(test: &Value) -> Label {
        match test["result"].as_str() {
            Some("valid") => Label::Valid,
            Some("invalid") => Label::Invalid,
            Some("acceptable") => Label::Acceptable,
            other => panic!("tcId {}: unknown result {other:?}", test["tcId"]),
        }
    }
}

/// What this crate does with a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ours {
    Accepts,
    Rejects(ValidationError),
    /// A panic (caught by `tests/jwe_vectors.rs`): never a correct answer, whatever the label.
    Panics,
}

/// A vector whose label this crate does not follow, and why.
pub(crate) struct Disagreement {
    pub(crate) tc_id: u64,
    pub(crate) ours: Ours,
    pub(crate) why: &'static str,
}

/// What a file's runner records about a vector besides its label: how it was serialized,
/// or whether it is a JWE or a JWS.
pub(crate) trait Kind: Copy + Debug + Ord {
    /// Whether a disagreement missing from the table is intended all the same.
    fn excused(self, _label: Label) -> bool {
        false
    }

    /// What an unexplained disagreement says about the kind, after the flags.
    fn note(self) -> String {
        String::new()
    }
}

/// `jwe` or `jws`.
impl Kind for &'static str {
    fn note(self) -> String {
        format!(" ({self})")
    }
}

/// One Wycheproof test and what we did with it.
#[derive(Debug)]
pub(crate) struct Case<K> {
    pub(crate) tc_id: u64,
    pub(crate) group: String,
    pub(crate) comment: String,
    pub(crate) flags: Vec<String>,
    pub(crate) label: Label,
    pub(crate) kind: K,
    pub(crate) ours: Ours,
}

impl<K> Case<K> {
    /// `test` of `group` (a Wycheproof test and its group), of `kind`, and what we did.
    pub(crate) fn new(group: &Value, test: &Value, kind: K, ours: Ours) -> Case<K> {
        Case {
            tc_id: test["tcId"].as_u64().expect("tcId"),
            group: group["comment"].as_str().unwrap_or_default().to_owned(),
            comment: test["comment"].as_str().unwrap_or_default().to_owned(),
            flags: test["flags"]
                .as_array()
                .map(|flags| flags.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            label: Label::of(test),
            kind,
            ours,
        }
    }
}

pub(crate) fn case<K>(cases: &[Case<K>], tc_id: u64) -> &Case<K> {
    cases.iter().find(|c| c.tc_id == tc_id).unwrap_or_else(|| panic!("no tcId {tc_id}"))
}

/// What [`check_labels`] counted.
#[derive(Debug)]
pub(crate) struct Counts<K> {
    pub(crate) valid: usize,
    pub(crate) invalid: usize,
    pub(crate) acceptable: usize,
    pub(crate) agreements: usize,
    pub(crate) documented: usize,
    /// Disagreements missing from the table that their [`Kind`] excuses.
    pub(crate) excused: usize,
    pub(crate) by_kind: BTreeMap<K, usize>,
}

/// `(… valid, … invalid, … acceptable); … agree with their label, … documented disagreements`
impl<K> Display for Counts<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({} valid, {} invalid, {} acceptable); {} agree with their label, {} documented disagreements",
            self.valid, self.invalid, self.acceptable, self.agreements, self.documented
        )
    }
}

/// Compares every case with its label; panics listing every unexplained disagreement,
/// every stale table entry, and every entry whose recorded behaviour is no longer ours.
/// A panic never agrees with a label; an `acceptable` vector may be accepted or rejected.
pub(crate) fn check_labels<K: Kind>(name: &str, cases: &[Case<K>], table: &[Disagreement]) -> Counts<K> {
    let mut documented: BTreeMap<u64, &Disagreement> = BTreeMap::new();
    for entry in table {
        assert!(documented.insert(entry.tc_id, entry).is_none(), "{name}: tcId {} is in the table twice", entry.tc_id);
    }
    let mut counts = Counts {
        valid: 0,
        invalid: 0,
        acceptable: 0,
        agreements: 0,
        documented: 0,
        excused: 0,
        by_kind: BTreeMap::new(),
    };
    let mut problems = Vec::new();
    for case in cases {
        *counts.by_kind.entry(case.kind).or_default() += 1;
        match case.label {
            Label::Valid => counts.valid += 1,
            Label::Invalid => counts.invalid += 1,
            Label::Acceptable => counts.acceptable += 1,
        }
        let agrees = match (case.label, &case.ours) {
            (_, Ours::Panics) => false,
            (Label::Valid, ours) => *ours == Ours::Accepts,
            (Label::Invalid, ours) => *ours != Ours::Accepts,
            (Label::Acceptable, _) => true,
        };
        match (agrees, documented.remove(&case.tc_id)) {
            (true, None) => counts.agreements += 1,
            (true, Some(entry)) => problems.push(format!(
                "tcId {} ({}) is in the disagreement table but now agrees with its label ({:?}, ours {:?}); \
                 remove the entry ({})",
                case.tc_id, case.comment, case.label, case.ours, entry.why
            )),
            (false, Some(entry)) if entry.ours == case.ours => counts.documented += 1,
            (false, Some(entry)) => problems.push(format!(
                "tcId {} ({}): the table says we do {:?}, but we now do {:?}",
                case.tc_id, case.comment, entry.ours, case.ours
            )),
            (false, None) if case.kind.excused(case.label) => counts.excused += 1,
            (false, None) => problems.push(format!(
                "tcId {} [{}] {} {:?}{}: labelled {:?}, but we do {:?}",
                case.tc_id,
                case.group,
                case.comment,
                case.flags,
                case.kind.note(),
                case.label,
                case.ours
            )),
        }
    }
    for (tc_id, entry) in documented {
        problems.push(format!("tcId {tc_id} is in the disagreement table but not in the file ({})", entry.why));
    }
    assert!(problems.is_empty(), "{name}: {} problem(s):\n{}", problems.len(), problems.join("\n"));
    counts
}
