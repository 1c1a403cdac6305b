//! The byte level: one reused buffer over any [`Read`], whitespace and
//! keys, a streaming skipper for values we do not want, and in-place
//! parsing of the values we do.
//!
//! The buffer holds at most one chunk plus the unfinished value that
//! straddles its end; it grows only when a single value is larger than the
//! buffer (never past `max_entry_bytes`). Nothing here knows the offer
//! file's shape: that is `parser.rs`.
//!
//! Values we keep (one product, one SKU's terms) are parsed *in place*
//! (borrowed, no copy) optimistically: if the value runs past the end of
//! the buffered bytes the [`Lexer`] says so, and we read more and parse it
//! again. With 1 MiB chunks and entries of a few kilobytes this re-parses
//! about 1% of the bytes, and saves a separate pass to find where each
//! value ends.
//!
//! Values we skip (the terms of skipped products, unknown keys) are never
//! buffered: [`Input::skip_value`] walks them chunk by chunk, using `memchr`
//! to jump to the next byte that can change its state (a quote or bracket
//! outside strings, a quote or backslash inside). It checks nesting, not
//! every token: a skipped value that is malformed inside but balanced goes
//! unnoticed, which is harmless since nothing is read from it.

use std::io::{self, Read};

use super::entries::Entry;
use super::lexer::{LexError, Lexer};
use memchr::{memchr2, memchr3};

/// What went wrong, before the parser adds where (which object, which SKU).
#[derive(Debug)]
pub(crate) enum Fault {
    Io {
        offset: u64,
        source: io::Error,
    },
    /// The input ended here.
    Eof {
        offset: u64,
    },
    Syntax {
        offset: u64,
        what: String,
    },
    /// A single value (starting at `offset`) does not fit in the largest
    /// allowed buffer.
    TooLarge {
        offset: u64,
        limit: usize,
    },
}

/// The bytes a parsed value came from, to turn borrowed strings back into
/// file offsets for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Span<'a> {
    bytes: &'a [u8],
    offset: u64,
}

impl Span<'_> {
    /// File offset of the value's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// File offset of `s` if it borrows from this span (i.e. it had no
    /// escapes), else of the whole value.
    pub fn offset_of(&self, s: &[u8]) -> u64 {
        let start = self.bytes.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if at >= start && at < start + self.bytes.len() {
            self.offset + (at - start) as u64
        } else {
            self.offset
        }
    }
}

pub(crate) struct Input<R> {
    reader: R,
    /// Its length is the buffer's capacity; `buf[pos..len]` is unread data.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    max_entry_bytes: usize,
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl<R: Read> Input<R> {
    pub fn new(reader: R, chunk_bytes: usize, max_entry_bytes: usize) -> Self {
        Self {
            reader,
            buf: vec![0; chunk_bytes.max(1)],
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            max_entry_bytes: max_entry_bytes.max(1),
        }
    }

    /// File offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes read from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.base + self.len as u64
    }

    /// Reads more input, keeping the unread bytes `buf[pos..len]` (moved to
    /// the front). Grows the buffer when it is full of unread bytes. Returns
    /// `false` at end of input.
    fn fill(&mut self) -> Result<bool, Fault> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.base += self.pos as u64;
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            if self.buf.len() >= self.max_entry_bytes {
                return Err(Fault::TooLarge {
                    offset: self.base,
                    limit: self.max_entry_bytes,
                });
            }
            let grown = (self.buf.len() * 2).min(self.max_entry_bytes);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Fault::Io {
                        offset: self.bytes_read(),
                        source,
                    });
                }
            }
        }
    }

    /// Discards what is buffered and reads the next chunk.
    fn fill_fresh(&mut self) -> Result<bool, Fault> {
        self.pos = self.len;
        self.fill()
    }

    fn eof_fault(&self) -> Fault {
        Fault::Eof {
            offset: self.bytes_read(),
        }
    }

    /// Skips whitespace; the next byte, not consumed (`None` at the end).
    pub fn peek(&mut self) -> Result<Option<u8>, Fault> {
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill_fresh()? {
                return Ok(None);
            }
        }
    }

    /// Like [`peek`](Self::peek), but the end of input is an error.
    pub fn peek_some(&mut self) -> Result<u8, Fault> {
        self.peek()?.ok_or_else(|| self.eof_fault())
    }

    /// Consumes the byte [`peek`](Self::peek) returned.
    pub fn bump(&mut self) {
        debug_assert!(self.pos < self.len);
        self.pos += 1;
    }

    /// Consumes `byte` (after whitespace), or fails saying what was expected.
    pub fn expect(&mut self, byte: u8, expected: &str) -> Result<(), Fault> {
        let b = self.peek_some()?;
        if b == byte {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(b, expected))
        }
    }

    /// A syntax fault for byte `found` at the current position.
    pub fn unexpected(&self, found: u8, expected: &str) -> Fault {
        Fault::Syntax {
            offset: self.offset(),
            what: format!("expected {expected}, found {}", describe(found)),
        }
    }

    /// Reads a JSON string (after whitespace) into `out`, decoding escapes.
    pub fn read_string(&mut self, out: &mut String) -> Result<(), Fault> {
        out.clear();
        let b = self.peek_some()?;
        if b != b'"' {
            return Err(self.unexpected(b, "a string"));
        }
        let mut i = self.pos + 1;
        let mut escaped = false;
        let end = loop {
            if i < self.len {
                if let Some(j) = memchr2(b'"', b'\\', &self.buf[i..self.len]) {
                    let k = i + j;
                    if self.buf[k] == b'"' {
                        break k;
                    }
                    escaped = true;
                    i = k + 2;
                    continue;
                }
                i = self.len;
            }
            let rel = i - self.pos;
            if !self.fill()? {
                return Err(self.eof_fault());
            }
            i = self.pos + rel;
        };
        let quoted = &self.buf[self.pos..=end];
        if escaped {
            let s: String = serde_json::from_slice(quoted).map_err(|e| Fault::Syntax {
                offset: self.offset(),
                what: format!("invalid string: {}", strip_position(&e)),
            })?;
            out.push_str(&s);
        } else {
            let s =
                std::str::from_utf8(&quoted[1..quoted.len() - 1]).map_err(|_| Fault::Syntax {
                    offset: self.offset(),
                    what: "string is not valid UTF-8".into(),
                })?;
            if let Some(c) = s.bytes().position(|c| c < 0x20) {
                return Err(Fault::Syntax {
                    offset: self.offset() + 1 + c as u64,
                    what: "control character in string".into(),
                });
            }
            out.push_str(s);
        }
        self.pos = end + 1;
        Ok(())
    }

    /// Skips one value of any type without buffering it.
    pub fn skip_value(&mut self) -> Result<(), Fault> {
        match self.peek_some()? {
            b'"' => {
                self.bump();
                self.skip_nested(0, 0, true)
            }
            b'{' => {
                self.bump();
                self.skip_nested(b'{', b'}', false)
            }
            b'[' => {
                self.bump();
                self.skip_nested(b'[', b']', false)
            }
            _ => self.skip_scalar(),
        }
    }

    /// Skips to the end of a container whose opening byte was consumed
    /// (or, with `in_string`, to the end of a string whose quote was).
    /// Only `open`/`close` are counted: in valid JSON the other kind of
    /// bracket nests strictly inside and cannot end this one.
    fn skip_nested(&mut self, open: u8, close: u8, in_string: bool) -> Result<(), Fault> {
        let string_only = in_string;
        let mut in_string = in_string;
        let mut depth = 1usize;
        // Bytes to step over at the start of the next chunk (an escape
        // sequence split by a chunk boundary).
        let mut carry = 0usize;
        loop {
            if carry > 0 {
                let step = carry.min(self.len - self.pos);
                self.pos += step;
                carry -= step;
            }
            let hay = &self.buf[self.pos..self.len];
            if in_string {
                match memchr2(b'"', b'\\', hay) {
                    Some(i) if hay[i] == b'"' => {
                        self.pos += i + 1;
                        in_string = false;
                        if string_only {
                            return Ok(());
                        }
                    }
                    Some(i) => {
                        let avail = hay.len() - i;
                        self.pos += (i + 2).min(hay.len());
                        carry = 2usize.saturating_sub(avail);
                    }
                    None => {
                        if !self.fill_fresh()? {
                            return Err(self.eof_fault());
                        }
                    }
                }
            } else {
                match memchr3(b'"', open, close, hay) {
                    Some(i) => {
                        let b = hay[i];
                        self.pos += i + 1;
                        if b == b'"' {
                            in_string = true;
                        } else if b == open {
                            depth += 1;
                        } else {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                    }
                    None => {
                        if !self.fill_fresh()? {
                            return Err(self.eof_fault());
                        }
                    }
                }
            }
        }
    }

    /// Skips a number, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Result<(), Fault> {
        let start = self.offset();
        let mut n = 0usize;
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if is_ws(b) || matches!(b, b',' | b'}' | b']' | b':') {
                    return Ok(());
                }
                if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) {
                    return Err(Fault::Syntax {
                        offset: self.offset(),
                        what: format!("expected a JSON value, found {}", describe(b)),
                    });
                }
                self.pos += 1;
                n += 1;
            }
            if !self.fill_fresh()? {
                return if n > 0 {
                    Ok(())
                } else {
                    Err(Fault::Eof { offset: start })
                };
            }
        }
    }

    /// Parses the next value (after whitespace) in place as an `E` and
    /// hands it to `f` with its span; reads more input and retries while
    /// the value runs past the buffered bytes.
    pub fn with_entry<E, O>(
        &mut self,
        f: impl for<'a> FnOnce(E::Out<'a>, Span<'a>) -> O,
    ) -> Result<O, Fault>
    where
        E: Entry,
    {
        self.peek_some()?;
        loop {
            let bytes = &self.buf[self.pos..self.len];
            let span = Span {
                bytes,
                offset: self.base + self.pos as u64,
            };
            let mut lexer = Lexer::new(bytes);
            match E::parse(&mut lexer) {
                Ok(value) => {
                    let used = lexer.position();
                    let out = f(value, span);
                    self.pos += used;
                    return Ok(out);
                }
                Err(LexError::Syntax { at, what }) => {
                    return Err(Fault::Syntax {
                        offset: span.offset + at as u64,
                        what,
                    });
                }
                // The value runs past the buffered bytes.
                Err(LexError::Eof) => {}
            }
            if !self.fill()? {
                return Err(self.eof_fault());
            }
        }
    }
}

/// `serde_json`'s message without its " at line L column C" (which is
/// relative to the entry, not the file).
pub(crate) fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}
