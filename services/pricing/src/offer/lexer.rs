//! A minimal pull parser over one buffered entry (a product, or one SKU's
//! terms), in place.
//!
//! `serde_json` on the same entries ran at ~400 MB/s here: it decodes and
//! UTF-8-checks every key and every string it borrows. This reader only
//! does what the entries need: it walks the objects it is asked to,
//! compares keys as raw bytes, hands kept values over as raw bytes (they
//! are decoded and checked when first interned), skips indentation and
//! short strings 8 bytes at a time in a register, and skips every other
//! value with `memchr` jumps like the top-level skipper (checking nesting,
//! not tokens). The whole parse runs at 2x serde's speed, and the entry
//! shapes are small and fixed.
//!
//! Running off the end of the slice is [`LexError::Eof`]: the caller reads
//! more input and parses the entry again.

use std::borrow::Cow;

use memchr::{memchr2, memchr3};

use super::entries::Str;
use super::input::strip_position;

#[derive(Debug)]
pub(crate) enum LexError {
    /// The slice ended inside the value.
    Eof,
    /// Malformed at byte `at` of the slice.
    Syntax { at: usize, what: String },
}

pub(crate) type Lex<T> = Result<T, LexError>;

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

// Strings and indentation are short, so they are scanned 8 bytes at a time
// in a register (SWAR) rather than with `memchr`, whose per-call set-up
// dominates on 10-30 byte runs.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes at `i` (which must be in bounds), first byte lowest.
#[inline]
fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// High bit set in each byte of `w` equal to `byte`. Exact for the lowest
/// set bit (a borrow can only add false positives above a true match).
#[inline]
fn bytes_equal(w: u64, byte: u8) -> u64 {
    let x = w ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Index of the first `"` or `\` at or after `i`: two words in a
/// register (most keys and values end within 16 bytes), then `memchr2`.
#[inline]
fn find_quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    for _ in 0..2 {
        if i + 8 > b.len() {
            break;
        }
        let w = word(b, i);
        let hits = bytes_equal(w, b'"') | bytes_equal(w, b'\\');
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr2(b'"', b'\\', b.get(i..)?).map(|j| i + j)
}

pub(crate) struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bytes consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn syntax(&self, at: usize, what: impl Into<String>) -> LexError {
        LexError::Syntax {
            at,
            what: what.into(),
        }
    }

    /// Skips whitespace; the next byte, not consumed.
    ///
    /// Any byte up to 0x20 counts as whitespace here, so 8 bytes are
    /// tested at once with one branch (indentation is most of the bytes of
    /// a pretty-printed file). Between tokens, JSON allows no other byte
    /// in that range, so this only accepts stray control characters
    /// between tokens of kept entries that a strict parser would refuse.
    #[inline]
    fn peek(&mut self) -> Lex<u8> {
        let b = self.bytes;
        let mut i = self.pos;
        while i + 8 <= b.len() {
            let w = word(b, i);
            // High bit set in each byte above 0x20 (exact for the lowest).
            let tokens = (w.wrapping_add(ONES * 0x5F) | w) & HIGHS;
            if tokens != 0 {
                i += (tokens.trailing_zeros() / 8) as usize;
                self.pos = i;
                return Ok(b[i]);
            }
            i += 8;
        }
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        self.pos = i;
        b.get(i).copied().ok_or(LexError::Eof)
    }

    fn expect(&mut self, byte: u8, expected: &str) -> Lex<()> {
        let b = self.peek()?;
        if b == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.found(b, expected))
        }
    }

    fn found(&self, b: u8, expected: &str) -> LexError {
        let what = if b.is_ascii_graphic() {
            format!("expected {expected}, found '{}'", b as char)
        } else {
            format!("expected {expected}, found byte 0x{b:02x}")
        };
        self.syntax(self.pos, what)
    }

    /// A string's raw bytes between the quotes, and whether it has escapes.
    #[inline]
    fn raw_string(&mut self) -> Lex<(&'a [u8], bool)> {
        let b = self.peek()?;
        if b != b'"' {
            return Err(self.found(b, "a string"));
        }
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            match find_quote_or_backslash(self.bytes, i) {
                Some(j) if self.bytes[j] == b'"' => {
                    self.pos = j + 1;
                    return Ok((&self.bytes[start..j], escaped));
                }
                Some(j) => {
                    escaped = true;
                    i = j + 2;
                }
                None => return Err(LexError::Eof),
            }
        }
    }

    /// A string: its raw bytes, or decoded if it has escapes.
    pub fn string(&mut self) -> Lex<Str<'a>> {
        let at = self.pos;
        let (raw, escaped) = self.raw_string()?;
        if !escaped {
            return Ok(Str(Cow::Borrowed(raw)));
        }
        let quoted = &self.bytes[self.pos - raw.len() - 2..self.pos];
        serde_json::from_slice::<String>(quoted)
            .map(|s| Str(Cow::Owned(s.into_bytes())))
            .map_err(|e| self.syntax(at, format!("invalid string: {}", strip_position(&e))))
    }

    /// Walks an object, calling `entry` with each raw key; `entry` must
    /// consume the value.
    pub fn object(&mut self, mut entry: impl FnMut(&mut Self, &'a [u8]) -> Lex<()>) -> Lex<()> {
        self.expect(b'{', "an object")?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let (key, _) = self.raw_string()?;
            self.expect(b':', "':'")?;
            entry(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                b => return Err(self.found(b, "',' or '}'")),
            }
        }
    }

    /// Skips any value.
    pub fn skip_value(&mut self) -> Lex<()> {
        match self.peek()? {
            b'"' => self.raw_string().map(drop),
            b'{' => self.skip_nested(b'{', b'}'),
            b'[' => self.skip_nested(b'[', b']'),
            _ => self.skip_scalar(),
        }
    }

    /// Skips an object or array (at its opening byte), counting only its
    /// own kind of bracket and stepping over strings.
    fn skip_nested(&mut self, open: u8, close: u8) -> Lex<()> {
        let b = self.bytes;
        let mut i = self.pos + 1;
        let mut depth = 1usize;
        loop {
            let j = memchr3(b'"', open, close, &b[i..]).ok_or(LexError::Eof)?;
            i += j + 1;
            match b[i - 1] {
                b'"' => loop {
                    let k = memchr2(b'"', b'\\', &b[i.min(b.len())..]).ok_or(LexError::Eof)?;
                    i += k + 1;
                    if b[i - 1] == b'"' {
                        break;
                    }
                    i += 1;
                },
                c if c == open => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos = i;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Skips a number, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Lex<()> {
        let start = self.pos;
        for (n, &c) in self.bytes[start..].iter().enumerate() {
            if is_ws(c) || matches!(c, b',' | b'}' | b']') {
                if n == 0 {
                    return Err(self.found(c, "a value"));
                }
                self.pos = start + n;
                return Ok(());
            }
            if !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')) {
                return Err(self.syntax(start + n, "expected a JSON value"));
            }
        }
        Err(LexError::Eof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Lex<usize> {
        let mut lx = Lexer::new(text.as_bytes());
        lx.skip_value()?;
        Ok(lx.position())
    }

    #[test]
    fn skips_values_and_reports_eof() {
        assert_eq!(
            skip(r#"  {"a": [1, "}", {"b": "\"{"}], "c": null} x"#).unwrap(),
            42
        );
        assert_eq!(skip(r#""a\\" x"#).unwrap(), 5);
        assert_eq!(skip("[[1], 2] x").unwrap(), 8);
        assert_eq!(skip("-1.5e3, x").unwrap(), 6);
        for partial in [
            r#"{"a": "#,
            r#"{"a": "x"#,
            r#""abc\"#,
            "[1, [2]",
            "12",
            "   ",
        ] {
            assert!(matches!(skip(partial), Err(LexError::Eof)), "{partial:?}");
        }
        assert!(matches!(skip("@"), Err(LexError::Syntax { .. })));
    }

    #[test]
    fn finds_quotes_at_every_position() {
        for len in 0..24 {
            for at in 0..len {
                for (hit, filler) in [(b'"', b'a'), (b'\\', 0xA2), (b'"', 0xDC), (b'"', b' ')] {
                    let mut bytes = vec![filler; len];
                    bytes[at] = hit;
                    for start in 0..=at {
                        assert_eq!(find_quote_or_backslash(&bytes, start), Some(at));
                    }
                    assert_eq!(find_quote_or_backslash(&bytes, at + 1), None);
                }
            }
        }
    }

    #[test]
    fn whitespace_of_any_length() {
        for len in 0..40 {
            for tail in [b'"', b'}', 0x80, 0xFF, b'!'] {
                let mut bytes: Vec<u8> = (0..len).map(|i| b" \n\t\r"[i % 4]).collect();
                bytes.push(tail);
                bytes.extend_from_slice(b"xxxxxxxxx");
                let mut lx = Lexer::new(&bytes);
                assert_eq!(lx.peek().unwrap(), tail, "{len}");
                assert_eq!(lx.position(), len);
            }
            let spaces = vec![b' '; len];
            assert!(matches!(Lexer::new(&spaces).peek(), Err(LexError::Eof)));
        }
    }

    #[test]
    fn objects_and_strings() {
        let mut lx = Lexer::new(br#"{ "k" : "v\u0041", "n" : { }, "s" : "x" }"#);
        let mut seen = Vec::new();
        lx.object(|lx, key| {
            match key {
                b"n" => lx.skip_value()?,
                _ => seen.push(String::from_utf8(lx.string()?.bytes().to_vec()).unwrap()),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["vA", "x"]);
        let mut lx = Lexer::new(br#"{ "k" : "v" "n" : 1 }"#);
        let e = lx.object(|lx, _| lx.skip_value()).unwrap_err();
        assert!(matches!(e, LexError::Syntax { at: 12, .. }), "{e:?}");
    }
}
