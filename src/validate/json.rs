//! A strict one-pass JSON reader (RFC 8259) for the claims set: the registered claims are
//! read where they lie, every other member is checked and stepped over without building
//! anything.
//!
//! It accepts exactly what `serde_json` accepts: the same grammar, control characters
//! refused in strings, escapes checked (and, in strings that are read, surrogates
//! paired), and no depth limit on skipped values, which are walked without recursion.
//! The claims tests hold it to `serde_json` on mutated and generated inputs.

use std::borrow::Cow;

/// The input is not what was expected here; the caller says which claim, if any.
#[derive(Debug)]
pub(crate) struct Invalid;

/// A cursor over JSON text (or bytes that should be: strings that are read are checked
/// for UTF-8, skipped ones are not, as with `serde_json::from_slice`).
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// The same input, when it is known to be text: strings are then sliced from it
    /// without checking their UTF-8 again.
    text: Option<&'a str>,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, text: None, at: 0 }
    }

    pub(crate) fn from_text(text: &'a str) -> Reader<'a> {
        Reader { bytes: text.as_bytes(), text: Some(text), at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// The next byte after whitespace, not taken.
    pub(crate) fn peek_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
        self.peek()
    }

    /// Takes `byte`, after whitespace.
    pub(crate) fn expect(&mut self, byte: u8) -> Result<(), Invalid> {
        if self.peek_token() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// Nothing but whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek_token().is_none()
    }

    /// The members of an object, after its `{` was taken: `Ok(true)` when a member (its
    /// key next) follows, `Ok(false)` once the `}` is taken. `first` is whether no member
    /// was read yet.
    pub(crate) fn next_member(&mut self, first: bool) -> Result<bool, Invalid> {
        match self.peek_token() {
            Some(b'}') => {
                self.at += 1;
                Ok(false)
            }
            Some(b',') if !first => {
                self.at += 1;
                // No trailing comma.
                if self.peek_token() == Some(b'"') { Ok(true) } else { Err(Invalid) }
            }
            Some(b'"') if first => Ok(true),
            _ => Err(Invalid),
        }
    }

    /// From the cursor, the index of the next `"` or `\`; a control character or the
    /// end of the input fails. Eight bytes at a time: this is most of the reading.
    fn scan(&self) -> Result<usize, Invalid> {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = ONES << 7;
        // The high bit of each byte that is `"`, `\` or below 0x20 is set, and maybe
        // (from borrows) of bytes after such a one, never of a byte before it.
        fn special(word: u64) -> u64 {
            let quote = word ^ (ONES * u64::from(b'"'));
            let backslash = word ^ (ONES * u64::from(b'\\'));
            (quote.wrapping_sub(ONES) & !quote
                | backslash.wrapping_sub(ONES) & !backslash
                | word.wrapping_sub(ONES * 0x20) & !word)
                & HIGH
        }
        let bytes = self.bytes;
        let mut at = self.at;
        while let Some(&word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
            let found = special(u64::from_le_bytes(word));
            if found != 0 {
                at += found.trailing_zeros() as usize / 8;
                break;
            }
            at += 8;
        }
        while let Some(&byte) = bytes.get(at) {
            if byte == b'"' || byte == b'\\' {
                return Ok(at);
            }
            if byte < 0x20 {
                break;
            }
            at += 1;
        }
        Err(Invalid)
    }

    /// A string, borrowed from the input when it has no escapes.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, Invalid> {
        self.expect(b'"')?;
        let start = self.at;
        let end = self.scan()?;
        if self.bytes[end] == b'"' {
            self.at = end + 1;
            // Both ends are next to a `"`, so on character boundaries.
            let text = match self.text {
                Some(text) => text.get(start..end),
                None => std::str::from_utf8(&self.bytes[start..end]).ok(),
            };
            return text.map(Cow::Borrowed).ok_or(Invalid);
        }
        let mut out = self.bytes[start..end].to_vec();
        self.at = end;
        // The cursor is on a `"` or a `\`.
        while self.bytes[self.at] == b'\\' {
            self.at += 1;
            self.unescape(&mut out)?;
            let end = self.scan()?;
            out.extend_from_slice(&self.bytes[self.at..end]);
            self.at = end;
        }
        self.at += 1;
        String::from_utf8(out).map(Cow::Owned).map_err(|_| Invalid)
    }

    /// One escape, after its `\`, appended to `out` as UTF-8; surrogates must pair.
    fn unescape(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let byte = match self.take()? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if self.take()? != b'\\' || self.take()? != b'u' {
                            return Err(Invalid);
                        }
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Invalid);
                        }
                        0x1_0000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Invalid),
                    _ => u32::from(unit),
                };
                let c = char::from_u32(code).ok_or(Invalid)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(Invalid),
        };
        out.push(byte);
        Ok(())
    }

    fn take(&mut self) -> Result<u8, Invalid> {
        let byte = self.peek().ok_or(Invalid)?;
        self.at += 1;
        Ok(byte)
    }

    fn hex4(&mut self) -> Result<u16, Invalid> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or(Invalid)?;
        let mut unit = 0u16;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(Invalid)?;
            unit = unit << 4 | v as u16;
        }
        self.at += 4;
        Ok(unit)
    }

    /// Steps over a string, after whitespace: escapes are checked, but neither
    /// surrogates nor UTF-8 (as `serde_json` does for what it ignores).
    fn skip_string(&mut self) -> Result<(), Invalid> {
        self.expect(b'"')?;
        loop {
            self.at = self.scan()?;
            if self.take()? == b'"' {
                return Ok(());
            }
            match self.take()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    self.hex4()?;
                }
                _ => return Err(Invalid),
            }
        }
    }

    /// Steps over a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    /// Returns whether it had a fraction or an exponent.
    fn skip_number(&mut self) -> Result<bool, Invalid> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.take()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return Err(Invalid),
        }
        let mut decimal = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
            decimal = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
            decimal = true;
        }
        Ok(decimal)
    }

    fn digit(&mut self) -> Result<(), Invalid> {
        if self.take()?.is_ascii_digit() { Ok(()) } else { Err(Invalid) }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// A NumericDate (RFC 7519 §2), in whole seconds: fractions are floored, and
    /// integers beyond `i64` saturate, as `serde_json` reads them; a number too large
    /// for an `f64` fails, as it does there.
    pub(crate) fn numeric_date(&mut self) -> Result<i64, Invalid> {
        self.peek_token();
        let start = self.at;
        // The usual date: a plain non-negative integer, read in one pass.
        let mut value = 0i64;
        for (i, &d) in self.bytes[start..].iter().enumerate().take(18) {
            if !d.is_ascii_digit() {
                let plain = i > 0 && !matches!(d, b'.' | b'e' | b'E') && (i == 1 || self.bytes[start] != b'0');
                if plain {
                    self.at = start + i;
                    return Ok(value);
                }
                break;
            }
            value = value * 10 + i64::from(d - b'0');
        }
        let decimal = self.skip_number()?;
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| Invalid)?;
        if decimal {
            let value: f64 = text.parse().map_err(|_| Invalid)?;
            // `as` saturates, which is the right reading of an absurd date.
            return if value.is_finite() { Ok(value.floor() as i64) } else { Err(Invalid) };
        }
        let (negative, digits) = match text.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, text),
        };
        let magnitude = digits.bytes().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
        Ok(match (negative, magnitude) {
            (false, Some(n)) => i64::try_from(n).unwrap_or(i64::MAX),
            (true, Some(n)) => 0i64.checked_sub_unsigned(n).unwrap_or(i64::MIN),
            // Beyond `u64`, `serde_json` reads an `f64`, and fails past its range.
            (_, None) => {
                let value: f64 = text.parse().map_err(|_| Invalid)?;
                if value.is_finite() { value.floor() as i64 } else { return Err(Invalid) }
            }
        })
    }

    /// Steps over any value, however deep, without recursion.
    pub(crate) fn skip_value(&mut self) -> Result<(), Invalid> {
        // The open arrays and objects: a bit each (set for an object), 64 to a word.
        let mut open = Nesting::default();
        loop {
            match self.peek_token().ok_or(Invalid)? {
                b'"' => self.skip_string()?,
                b'-' | b'0'..=b'9' => {
                    self.skip_number()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'[' => {
                    self.at += 1;
                    if self.peek_token() != Some(b']') {
                        open.push(false);
                        continue;
                    }
                    self.at += 1;
                }
                b'{' => {
                    self.at += 1;
                    if self.next_member(true)? {
                        self.skip_string()?;
                        self.expect(b':')?;
                        open.push(true);
                        continue;
                    }
                }
                _ => return Err(Invalid),
            }
            // A value is complete: close what it completes, or go on to the next one.
            loop {
                match open.top() {
                    None => return Ok(()),
                    Some(true) => {
                        if self.next_member(false)? {
                            self.skip_string()?;
                            self.expect(b':')?;
                            break;
                        }
                    }
                    Some(false) => match self.peek_token() {
                        Some(b',') => {
                            self.at += 1;
                            break;
                        }
                        Some(b']') => self.at += 1,
                        _ => return Err(Invalid),
                    },
                }
                open.pop();
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

/// A stack of bits with no allocation for the first 64.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    high: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.low = self.low & !(1 << self.depth) | u64::from(object) << self.depth;
        } else {
            self.high.push(object);
        }
        self.depth += 1;
    }

    fn top(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d @ 1..=64 => Some(self.low >> (d - 1) & 1 == 1),
            _ => self.high.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.depth > 64 {
            self.high.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(json: &str) -> Result<usize, Invalid> {
        let mut r = Reader::new(json.as_bytes());
        r.skip_value()?;
        if r.at_end() { Ok(r.at) } else { Err(Invalid) }
    }

    #[test]
    fn skips_what_serde_json_accepts_and_nothing_else() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(100), "}".repeat(100));
        let inputs = [
            "1",
            "-0",
            "0.5",
            "1e5",
            "-1.5E+3",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "true",
            "tru",
            "nul",
            "null ",
            r#""a\u00e9\n""#,
            r#""\x""#,
            r#""\u12g4""#,
            r#""\ud800""#,
            "\"\u{1}\"",
            r#""a"#,
            "[]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{1:1}"#,
            r#"{"a":[{"b":{}}, [], "c"]}"#,
            "[[[]]]",
            "[[]",
            "{]",
            "[}",
            &deep,
            &deep_objects,
        ];
        for input in inputs {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(input).is_ok();
            assert_eq!(skip(input).is_ok(), serde, "{input:?}");
        }
    }

    #[test]
    fn strings_unescape_and_pair_surrogates() {
        let read = |json: &str| Reader::new(json.as_bytes()).string().map(Cow::into_owned).ok();
        assert_eq!(read(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(read(r#""a\"b\\c\/d\b\f\n\r\t""#).as_deref(), Some("a\"b\\c/d\u{8}\u{c}\n\r\t"));
        assert_eq!(read(r#""\u00e9\ud83d\ude00""#).as_deref(), Some("é😀"));
        for bad in [r#""\ud83d""#, r#""\ude00""#, r#""\ud83d\u0041""#, r#""\ud83dx""#, "\"a\tb\"", r#""open"#] {
            assert_eq!(read(bad), None, "{bad}");
            assert!(serde_json::from_str::<String>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numeric_dates_read_as_serde_json_reads_them() {
        let read = |json: &str| Reader::new(json.as_bytes()).numeric_date().ok();
        assert_eq!(read("1700000000"), Some(1_700_000_000));
        assert_eq!(read("-5"), Some(-5));
        assert_eq!(read("1.9"), Some(1));
        assert_eq!(read("-0.5"), Some(-1));
        assert_eq!(read("17e8"), Some(1_700_000_000));
        assert_eq!(read("99999999999999999999999"), Some(i64::MAX));
        assert_eq!(read("-99999999999999999999999"), Some(i64::MIN));
        assert_eq!(read("9223372036854775808"), Some(i64::MAX));
        assert_eq!(read("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(read("1e400"), None);
        assert_eq!(read(&"9".repeat(400)), None);
        assert!(serde_json::from_str::<serde_json::Value>(&"9".repeat(400)).is_err());
        assert_eq!(read("\"1\""), None);
        assert!(serde_json::from_str::<f64>("1e400").is_err());
    }
}
