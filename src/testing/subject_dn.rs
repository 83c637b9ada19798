//! Subject distinguished names for `tls_client_auth` (RFC 8705 §2.1.2): the registered
//! string (RFC 4514) and a certificate's subject (RFC 5280 §4.1.2.6), parsed into one
//! form so that they compare attribute by attribute.
//!
//! Attribute types compare by OID, whatever the name or case they were written with;
//! values compare exactly, after RFC 4514 unescaping. The attributes of a
//! multi-valued RDN (`+`) compare in any order.

use std::fmt;

/// A parsed distinguished name: RDNs from the most significant (the certificate's
/// first, the string's last), each a sorted list of (OID, value).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SubjectDn(Vec<Vec<(String, Value)>>);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    /// A value of a string type, decoded.
    Text(String),
    /// The DER of a value that is not a string (RFC 4514 §2.4 `#hex`).
    Der(Vec<u8>),
}

impl fmt::Debug for SubjectDn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A subject is public; the attribute count is all a log needs.
        f.debug_struct("SubjectDn").field("rdns", &self.0.len()).finish()
    }
}

/// The attribute type names of RFC 4514 §3, and two that certificates often carry.
const NAMES: [(&str, &str); 11] = [
    ("CN", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
];

impl SubjectDn {
    /// Parses an RFC 4514 string such as `CN=client,O=Example\, Inc.,C=DE`. Spaces
    /// around `,`, `+` and `=` are ignored; a space that belongs to a value is escaped.
    ///
    /// # Errors
    ///
    /// A short reason when the string is not a distinguished name.
    pub(crate) fn parse(dn: &str) -> Result<SubjectDn, &'static str> {
        let mut rdns = Vec::new();
        for rdn in split_unescaped(dn, b',') {
            let mut attributes = Vec::new();
            for attribute in split_unescaped(rdn, b'+') {
                let (name, value) = attribute.split_once('=').ok_or("an attribute has no `=`")?;
                let oid = oid_of(name.trim()).ok_or("an attribute type is unknown")?;
                let value = value.trim_start_matches(' ');
                let value = match value.strip_prefix('#') {
                    Some(hex) => Value::Der(decode_hex(hex.trim_end_matches(' ')).ok_or("a #value is not hex")?),
                    None => Value::Text(unescape(value)?),
                };
                attributes.push((oid, value));
            }
            attributes.sort();
            rdns.push(attributes);
        }
        if rdns.is_empty() {
            return Err("the distinguished name is empty");
        }
        // RFC 4514 §2.1: the string starts with the last RDN of the sequence.
        rdns.reverse();
        Ok(SubjectDn(rdns))
    }

    /// The subject of a DER certificate (RFC 5280 §4.1); `None` when it does not parse.
    pub(crate) fn of_certificate(der: &[u8]) -> Option<SubjectDn> {
        let (certificate, _) = Der::read(der, SEQUENCE)?;
        let (tbs, _) = Der::read(certificate, SEQUENCE)?;
        let mut rest = tbs;
        // `version` is `[0] EXPLICIT`, and absent for v1 certificates.
        if rest.first() == Some(&0xA0) {
            rest = Der::read(rest, 0xA0)?.1;
        }
        rest = Der::read(rest, INTEGER)?.1; // serialNumber
        rest = Der::read(rest, SEQUENCE)?.1; // signature
        rest = Der::read(rest, SEQUENCE)?.1; // issuer
        rest = Der::read(rest, SEQUENCE)?.1; // validity
        let (subject, _) = Der::read(rest, SEQUENCE)?;
        SubjectDn::from_name(subject)
    }

    /// An X.501 `Name`'s content: a sequence of RDNs, each a set of attributes.
    fn from_name(mut name: &[u8]) -> Option<SubjectDn> {
        let mut rdns = Vec::new();
        while !name.is_empty() {
            let (mut set, rest) = Der::read(name, SET)?;
            name = rest;
            let mut attributes = Vec::new();
            while !set.is_empty() {
                let (mut attribute, rest) = Der::read(set, SEQUENCE)?;
                set = rest;
                let (oid, rest) = Der::read(attribute, OID)?;
                attribute = rest;
                let value = string_value(attribute)?;
                attributes.push((dotted(oid)?, value));
            }
            attributes.sort();
            rdns.push(attributes);
        }
        Some(SubjectDn(rdns))
    }
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// A DER reader for definite lengths, which is all DER has.
struct Der;

impl Der {
    /// The content of the element at the start of `input` if its tag is `tag`, and
    /// what follows it.
    fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0_usize, |length, &byte| (length << 8) | usize::from(byte))
        };
        (rest.len() >= length).then(|| rest.split_at(length))
    }
}

/// An attribute value: the string types decoded, anything else kept as DER.
fn string_value(element: &[u8]) -> Option<Value> {
    let (&tag, _) = element.split_first()?;
    let (content, rest) = Der::read(element, tag)?;
    if !rest.is_empty() {
        return None;
    }
    let text = match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString.
        0x0C | 0x12 | 0x13 | 0x16 | 0x1A => String::from_utf8(content.to_vec()).ok()?,
        // TeletexString, read as Latin-1 as most software does.
        0x14 => content.iter().map(|&byte| char::from(byte)).collect(),
        // BMPString: UTF-16BE.
        0x1E => {
            let units: Vec<u16> = content.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            String::from_utf16(&units).ok()?
        }
        // UniversalString: UTF-32BE.
        0x1C => content
            .chunks_exact(4)
            .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
            .collect::<Option<String>>()?,
        _ => return Some(Value::Der(element.to_vec())),
    };
    Some(Value::Text(text))
}

/// An OBJECT IDENTIFIER's content as dotted decimal (X.690 §8.19).
fn dotted(content: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut arc: u64 = 0;
    for &byte in content {
        arc = arc.checked_mul(128)?.checked_add(u64::from(byte & 0x7F))?;
        if byte & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    if content.last().is_none_or(|last| last & 0x80 != 0) {
        return None;
    }
    let first = arcs.first().copied()?;
    let (top, second) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut dotted = format!("{top}.{second}");
    for arc in &arcs[1..] {
        dotted.push_str(&format!(".{arc}"));
    }
    Some(dotted)
}

/// The OID of an attribute type written as a name (any case) or as dotted decimal.
fn oid_of(name: &str) -> Option<String> {
    if let Some((_, oid)) = NAMES.iter().find(|(short, _)| short.eq_ignore_ascii_case(name)) {
        return Some((*oid).to_owned());
    }
    let dotted = name.strip_prefix("OID.").or_else(|| name.strip_prefix("oid.")).unwrap_or(name);
    let well_formed = !dotted.is_empty()
        && dotted.split('.').count() >= 2
        && dotted.split('.').all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    well_formed.then(|| dotted.to_owned())
}

/// Splits at each `separator` that is not escaped with `\`.
fn split_unescaped(text: &str, separator: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            _ if byte == separator => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.retain(|part| !part.trim().is_empty());
    parts
}

/// RFC 4514 §3: `\` before a special character or two hex digits (a byte of the UTF-8
/// value). Unescaped trailing spaces are dropped.
fn unescape(value: &str) -> Result<String, &'static str> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut significant = 0;
    let mut input = value.bytes().peekable();
    while let Some(byte) = input.next() {
        if byte != b'\\' {
            bytes.push(byte);
            if byte != b' ' {
                significant = bytes.len();
            }
            continue;
        }
        let next = input.next().ok_or("a value ends with `\\`")?;
        let decoded = match hex_digit(next) {
            Some(high) => {
                let low = input.next().and_then(hex_digit).ok_or("a `\\` escape is not two hex digits")?;
                (high << 4) | low
            }
            None => next,
        };
        bytes.push(decoded);
        significant = bytes.len();
    }
    bytes.truncate(significant);
    String::from_utf8(bytes).map_err(|_| "a value is not UTF-8")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes().chunks_exact(2).map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?)).collect()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn certificate(attributes: &[(DnType, &str)]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in attributes {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn parsed(dn: &str) -> SubjectDn {
        SubjectDn::parse(dn).unwrap()
    }

    #[test]
    fn a_certificate_subject_matches_its_rfc_4514_string_in_reverse_order() {
        let der = certificate(&[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Example, Inc."),
            (DnType::CommonName, "client-a"),
        ]);
        let subject = SubjectDn::of_certificate(&der).unwrap();
        assert_eq!(subject, parsed(r"CN=client-a,O=Example\, Inc.,C=DE"));
        assert_eq!(subject, parsed(r"cn=client-a, o=Example\2C Inc., 2.5.4.6=DE"));
        assert_ne!(subject, parsed(r"CN=client-b,O=Example\, Inc.,C=DE"));
        assert_ne!(subject, parsed(r"C=DE,O=Example\, Inc.,CN=client-a"));
        assert_ne!(subject, parsed("CN=client-a"));
    }

    #[test]
    fn values_compare_exactly_after_unescaping() {
        assert_eq!(parsed(r"CN=a\+b\ "), SubjectDn(vec![vec![("2.5.4.3".into(), Value::Text("a+b ".into()))]]));
        assert_ne!(parsed("CN=Client"), parsed("CN=client"));
        assert_eq!(parsed("CN=x+O=y"), parsed("O=y+CN=x"));
        assert_eq!(parsed(r"CN=caf\C3\A9"), parsed("CN=café"));
    }

    #[test]
    fn malformed_names_are_refused() {
        for dn in ["", " , ", "CN", "XX=unknown", "CN=a\\", r"CN=a\4", "CN=#zz", r"CN=\FF"] {
            assert!(SubjectDn::parse(dn).is_err(), "{dn}");
        }
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(SubjectDn::of_certificate(b"").is_none());
        assert!(SubjectDn::of_certificate(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_none());
        let der = certificate(&[(DnType::CommonName, "x")]);
        assert!(SubjectDn::of_certificate(&der[..der.len() / 2]).is_none());
    }

    #[test]
    fn oids_decode_to_dotted_decimal() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(
            dotted(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01]).as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
        assert_eq!(dotted(&[0x86]), None);
    }
}
