//! Streaming a CloudTrail log file one record at a time.
//!
//! A CloudTrail log file is a single JSON document, `{"Records":[{…},{…}]}`,
//! gzipped, and can be hundreds of megabytes uncompressed. Parsing it with
//! `serde_json::from_reader` into a `Vec` would hold the whole file in memory;
//! this module instead runs a small byte-level scanner over a [`BufRead`] and
//! hands out each element of the top-level `"Records"` array as its own byte
//! slice, so memory use is bounded by the largest record (and capped by
//! `max_record_bytes`), not by the file.
//!
//! The scanner knows just enough JSON to find record boundaries:
//!
//! * the prelude walks the top-level object key by key (other keys before
//!   `"Records"` are skipped, whatever their value) until it reaches
//!   `"Records": [`;
//! * inside a record it only needs the string boundaries (with escapes)
//!   and the `{`/`}` depth outside strings. A SWAR test marks the `"`, `\`,
//!   `{` and `}` bytes of each 8-byte word and only those go through the
//!   state machine (see `ObjectScan::run`). Square brackets cannot end an
//!   object in well-formed JSON, so they are not counted;
//!   a record that is malformed inside is still delimited correctly by its
//!   braces and is rejected later, by `normalise`, with serde's message.
//!
//! [`RecordStream::next_record`] lends each record out without copying when
//! it lies within the reader's buffer (almost always, with the 256 KiB
//! buffer of [`gzip_records`]), and from one reused buffer when it spans two
//! reads; the [`Iterator`] impl gives owned [`RawRecord`]s for convenience.
//! [`RecordStream::next_parsed`] lets a parser that finds the end of the
//! record itself (serde_json does) skip the scan altogether, falling back to
//! it for records that span reads or do not parse: that is the fast path
//! `normalise::next_normalised` uses.
//!
//! A file may hold several whole documents one after the other: gzip
//! members that each carry a `{"Records":[…]}` (what `cat a.gz b.gz`
//! makes, and what some forwarders write). After a document's closing `}`
//! the stream looks for the next `{` and goes on, so every record of every
//! document comes out, with indexes and offsets counted across the whole
//! file; anything else after a document is an error, never silently
//! ignored.
//!
//! Every error names the uncompressed byte offset where it was noticed, so a
//! bad file can be inspected with `zcat file | tail -c +$((OFFSET + 1))`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use memchr::memchr2;

/// Largest record accepted by default: 8 MiB (CloudTrail's own records are
/// far smaller; this only guards against a corrupt or hostile file).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 << 20;

/// Read-buffer size for gzip input: large enough that decompression runs in
/// long batches.
const GZIP_BUFFER_BYTES: usize = 256 << 10;

/// Why a log file could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The compressed input is not gzip, or is corrupt.
    #[error("gzip error at uncompressed byte offset {offset}: {source}")]
    Gzip { offset: u64, source: io::Error },
    /// The (uncompressed) reader failed.
    #[error("read error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    /// The input ended before the document was complete.
    #[error("file is truncated: input ends at uncompressed byte offset {offset}, inside {inside}")]
    Truncated { offset: u64, inside: Inside },
    /// The document is JSON-ish but not a CloudTrail log file.
    #[error("not a CloudTrail log file (at uncompressed byte offset {offset}): {what}")]
    NotCloudTrail { offset: u64, what: String },
    /// The document is malformed between or around records.
    #[error("invalid log file at uncompressed byte offset {offset}: {what}")]
    Invalid { offset: u64, what: String },
    /// A record is larger than the stream's limit; it was skipped without
    /// being buffered and the stream continues after it.
    #[error(
        "record {index} at uncompressed byte offset {offset} is larger than the {limit}-byte limit"
    )]
    TooLarge {
        index: usize,
        offset: u64,
        limit: usize,
    },
}

impl RecordError {
    /// The uncompressed byte offset the error refers to.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Gzip { offset, .. }
            | Self::Io { offset, .. }
            | Self::Truncated { offset, .. }
            | Self::NotCloudTrail { offset, .. }
            | Self::Invalid { offset, .. }
            | Self::TooLarge { offset, .. } => *offset,
        }
    }

    /// Whether the stream can go on after this error (only an oversized
    /// record is skipped; everything else ends the stream).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::TooLarge { .. })
    }
}

/// What the input was in the middle of when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inside {
    TopLevelObject,
    RecordsArray,
    Record { index: usize, offset: u64 },
}

impl fmt::Display for Inside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TopLevelObject => f.write_str("the top-level object"),
            Self::RecordsArray => f.write_str("the Records array"),
            Self::Record { index, offset } => {
                write!(f, "record {index} (which starts at byte offset {offset})")
            }
        }
    }
}

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's JSON text, exactly as in the file.
    pub bytes: Vec<u8>,
    /// Uncompressed byte offset of its opening `{`.
    pub offset: u64,
    /// Position in the `Records` array, from 0.
    pub index: usize,
}

/// One record, borrowed from the stream's reused buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub bytes: &'a [u8],
    pub offset: u64,
    pub index: usize,
}

/// A record as made by [`RecordStream::next_parsed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    pub value: T,
    /// Uncompressed byte offset of the record's opening `{`.
    pub offset: u64,
    /// Position in the `Records` array, from 0.
    pub index: usize,
}

impl RecordRef<'_> {
    pub fn to_owned_record(&self) -> RawRecord {
        RawRecord {
            bytes: self.bytes.to_vec(),
            offset: self.offset,
            index: self.index,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet.
    Start,
    /// Just after `[` (an element or `]` may follow).
    ArrayOpen,
    /// Just after an element (`,` or `]` must follow).
    AfterElement,
    /// Just after `,` (an element must follow).
    AfterComma,
    /// Just after a document's `]`: the rest of its top-level object, then
    /// the end of input or another document.
    AfterArray,
    /// Finished, or failed: the iterator is fused.
    Done,
}

/// A stream of the records of one CloudTrail log file.
pub struct RecordStream<R: BufRead> {
    input: Input<R>,
    state: State,
    buf: Vec<u8>,
    index: usize,
    max_record_bytes: usize,
}

/// Records of a gzipped log file (one or more gzip members, as S3 delivers
/// them or as `cat a.gz b.gz` makes them).
pub fn gzip_records<R: Read>(
    compressed: R,
    max_record_bytes: usize,
) -> RecordStream<BufReader<MultiGzDecoder<R>>> {
    let reader = BufReader::with_capacity(GZIP_BUFFER_BYTES, MultiGzDecoder::new(compressed));
    RecordStream::new(reader, max_record_bytes, true)
}

/// Records of an uncompressed log file.
pub fn json_records<R: BufRead>(reader: R, max_record_bytes: usize) -> RecordStream<R> {
    RecordStream::new(reader, max_record_bytes, false)
}

impl<R: BufRead> RecordStream<R> {
    fn new(reader: R, max_record_bytes: usize, gzip: bool) -> Self {
        Self {
            input: Input {
                reader,
                pos: 0,
                pending: 0,
                gzip,
            },
            state: State::Start,
            buf: Vec::new(),
            index: 0,
            max_record_bytes,
        }
    }

    /// Uncompressed bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.pos
    }

    /// The next record, lent from a buffer that is reused for the next call
    /// (no allocation per record once the buffer has grown to the largest
    /// record). `None` after the closing `]` or after a fatal error.
    pub fn next_record(&mut self) -> Option<Result<RecordRef<'_>, RecordError>> {
        let placed = self.seek_record().and_then(|at| match at {
            Some((offset, index)) => self.scan(offset, index).map(|p| Some((offset, index, p))),
            None => Ok(None),
        });
        match placed {
            Ok(Some((offset, index, Placed::Copied))) => Some(Ok(RecordRef {
                bytes: &self.buf,
                offset,
                index,
            })),
            Ok(Some((offset, index, Placed::InPlace(len)))) => match self.input.lend(len) {
                Ok(bytes) => Some(Ok(RecordRef {
                    bytes,
                    offset,
                    index,
                })),
                // Not `self.fail`: `self.input` is borrowed by the other arm.
                Err(e) => {
                    self.state = State::Done;
                    Some(Err(e))
                }
            },
            Ok(None) => None,
            Err(e) => Some(Err(self.fail(e))),
        }
    }

    /// The next record, for a parser that finds the record's end itself and
    /// so saves the scan: `parse` is given the reader's buffered bytes from
    /// the record's `{` on and returns its value and the record's length,
    /// or `None` if it cannot (the record continues past the buffer, or is
    /// malformed). Then the record is delimited by the scanner as in
    /// [`next_record`](Self::next_record) and given to `fallback`.
    ///
    /// `parse` must only return a length that ends a complete JSON object
    /// starting at the first byte (as `serde_json`'s `StreamDeserializer`
    /// reports it).
    pub fn next_parsed<T>(
        &mut self,
        parse: impl FnOnce(&[u8]) -> Option<(T, usize)>,
        fallback: impl FnOnce(RecordRef<'_>) -> T,
    ) -> Option<Result<Parsed<T>, RecordError>> {
        let (offset, index) = match self.seek_record() {
            Ok(Some(at)) => at,
            Ok(None) => return None,
            Err(e) => return Some(Err(self.fail(e))),
        };
        let buf = match self.input.fill() {
            Ok(buf) => buf,
            Err(e) => return Some(Err(self.fail(e))),
        };
        if let Some((value, len)) = parse(buf) {
            // A length that does not end on a `}` in the buffer is a parser
            // bug: ignore the value and delimit the record by scanning.
            let plausible = len > 0 && buf.get(len - 1) == Some(&b'}');
            if plausible {
                self.input.consume(len);
                if len > self.max_record_bytes {
                    return Some(Err(RecordError::TooLarge {
                        index,
                        offset,
                        limit: self.max_record_bytes,
                    }));
                }
                return Some(Ok(Parsed {
                    value,
                    offset,
                    index,
                }));
            }
        }
        let record = match self.scan(offset, index) {
            Ok(Placed::Copied) => Ok(RecordRef {
                bytes: &self.buf,
                offset,
                index,
            }),
            Ok(Placed::InPlace(len)) => self.input.lend(len).map(|bytes| RecordRef {
                bytes,
                offset,
                index,
            }),
            Err(e) => Err(e),
        };
        match record {
            Ok(r) => Some(Ok(Parsed {
                value: fallback(r),
                offset,
                index,
            })),
            Err(e) => Some(Err(self.fail(e))),
        }
    }

    /// Records an error: all but an oversized record end the stream.
    fn fail(&mut self, e: RecordError) -> RecordError {
        if !e.is_recoverable() {
            self.state = State::Done;
        }
        e
    }

    /// Delimits the record whose `{` is next, at `offset`.
    fn scan(&mut self, offset: u64, index: usize) -> Result<Placed, RecordError> {
        self.buf.clear();
        match self.input.scan_object(
            &mut self.buf,
            self.max_record_bytes,
            Inside::Record { index, offset },
        )? {
            Some(placed) => Ok(placed),
            None => {
                self.buf.clear();
                Err(RecordError::TooLarge {
                    index,
                    offset,
                    limit: self.max_record_bytes,
                })
            }
        }
    }

    /// Moves to the `{` of the next record (not consumed) and counts it;
    /// returns its offset and index, or `None` at the end of the array.
    fn seek_record(&mut self) -> Result<Option<(u64, usize)>, RecordError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start => {
                    self.input.find_records_array()?;
                    self.state = State::ArrayOpen;
                }
                State::AfterArray => {
                    self.input.finish_document()?;
                    match self.input.peek_non_ws()? {
                        None => {
                            self.state = State::Done;
                            return Ok(None);
                        }
                        // Another whole document (a further gzip member).
                        Some(b'{') => self.state = State::Start,
                        Some(b) => {
                            return Err(RecordError::Invalid {
                                offset: self.input.pos,
                                what: format!(
                                    "expected another {{\"Records\":[…]}} document or the end of the file after a document, found {}",
                                    show(b)
                                ),
                            });
                        }
                    }
                }
                State::AfterElement => match self.input.peek_non_ws()? {
                    Some(b',') => {
                        self.input.bump();
                        self.state = State::AfterComma;
                    }
                    Some(b']') => {
                        self.input.bump();
                        self.state = State::AfterArray;
                    }
                    Some(b) => {
                        return Err(RecordError::Invalid {
                            offset: self.input.pos,
                            what: format!(
                                "expected ',' or ']' after record {}, found {}",
                                self.index.saturating_sub(1),
                                show(b)
                            ),
                        });
                    }
                    None => return Err(self.input.truncated(Inside::RecordsArray)),
                },
                State::ArrayOpen | State::AfterComma => {
                    let offset = self.input.pos;
                    match self.input.peek_non_ws()? {
                        Some(b'{') => {
                            let index = self.index;
                            self.index += 1;
                            self.state = State::AfterElement;
                            return Ok(Some((self.input.pos, index)));
                        }
                        Some(b']') if self.state == State::ArrayOpen => {
                            self.input.bump();
                            self.state = State::AfterArray;
                        }
                        Some(b']') => {
                            return Err(RecordError::Invalid {
                                offset,
                                what: "trailing ',' before ']' in the Records array".into(),
                            });
                        }
                        Some(b) => {
                            return Err(RecordError::Invalid {
                                offset: self.input.pos,
                                what: format!(
                                    "Records element {} is not an object (starts with {})",
                                    self.index,
                                    show(b)
                                ),
                            });
                        }
                        None => return Err(self.input.truncated(Inside::RecordsArray)),
                    }
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for RecordStream<R> {
    type Item = Result<RawRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
            .map(|r| r.map(|rec| rec.to_owned_record()))
    }
}

impl<R: BufRead> std::iter::FusedIterator for RecordStream<R> {}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Where a record's bytes are.
#[derive(Debug, Clone, Copy)]
enum Placed {
    /// In the stream's own buffer (the record spanned reader buffers).
    Copied,
    /// The first `len` bytes of the reader's buffer, not yet consumed.
    InPlace(usize),
}

/// The reader plus the count of bytes consumed from it.
struct Input<R> {
    reader: R,
    /// Bytes consumed so far, including `pending`.
    pos: u64,
    /// Bytes of a record lent in place, to consume from the reader before
    /// anything else is read.
    pending: usize,
    gzip: bool,
}

impl<R: BufRead> Input<R> {
    fn io_error(&self, source: io::Error) -> RecordError {
        let offset = self.pos;
        if self.gzip {
            RecordError::Gzip { offset, source }
        } else {
            RecordError::Io { offset, source }
        }
    }

    fn truncated(&self, inside: Inside) -> RecordError {
        RecordError::Truncated {
            offset: self.pos,
            inside,
        }
    }

    /// The buffered bytes, refilling if empty; empty only at end of input.
    fn fill(&mut self) -> Result<&[u8], RecordError> {
        if self.pending > 0 {
            self.reader.consume(std::mem::take(&mut self.pending));
        }
        loop {
            match self.reader.fill_buf() {
                // The data is fetched again below: returning this borrow from
                // inside the loop is rejected by the current borrow checker.
                // The second call is a no-op on the buffered data.
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        }
        let (offset, gzip) = (self.pos, self.gzip);
        self.reader.fill_buf().map_err(|source| {
            if gzip {
                RecordError::Gzip { offset, source }
            } else {
                RecordError::Io { offset, source }
            }
        })
    }

    /// The first `len` buffered bytes, which `scan_object` left in place:
    /// `fill_buf` returns the same, unconsumed buffer without reading.
    fn lend(&mut self, len: usize) -> Result<&[u8], RecordError> {
        let (offset, gzip) = (self.pos, self.gzip);
        match self.reader.fill_buf() {
            Ok(buf) if buf.len() >= len => Ok(&buf[..len]),
            Ok(_) => Err(RecordError::Io {
                offset,
                source: io::Error::other("the reader's buffer changed without a read"),
            }),
            Err(source) if gzip => Err(RecordError::Gzip { offset, source }),
            Err(source) => Err(RecordError::Io { offset, source }),
        }
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.pos += n as u64;
    }

    fn bump(&mut self) {
        self.consume(1);
    }

    /// Skips whitespace and returns (without consuming) the next byte.
    fn peek_non_ws(&mut self) -> Result<Option<u8>, RecordError> {
        loop {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let b = buf[i];
                    self.consume(i);
                    return Ok(Some(b));
                }
                None => {
                    let n = buf.len();
                    self.consume(n);
                }
            }
        }
    }

    /// Reads the top-level `{` and keys up to and including the `[` that
    /// opens `"Records"`.
    fn find_records_array(&mut self) -> Result<(), RecordError> {
        match self.peek_non_ws()? {
            Some(b'{') => self.bump(),
            Some(b) => {
                return Err(RecordError::NotCloudTrail {
                    offset: self.pos,
                    what: format!(
                        "the top level is not a JSON object (starts with {})",
                        show(b)
                    ),
                });
            }
            None => {
                return Err(RecordError::NotCloudTrail {
                    offset: self.pos,
                    what: "the file is empty".into(),
                });
            }
        }
        let mut key = Vec::new();
        loop {
            match self.peek_non_ws()? {
                Some(b'"') => {}
                Some(b'}') => {
                    return Err(RecordError::NotCloudTrail {
                        offset: self.pos,
                        what: "the top-level object has no \"Records\" key".into(),
                    });
                }
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!("expected a key in the top-level object, found {}", show(b)),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
            key.clear();
            self.read_string(&mut key, 64)?;
            match self.peek_non_ws()? {
                Some(b':') => self.bump(),
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!("expected ':' after a top-level key, found {}", show(b)),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
            if key == b"Records" {
                return match self.peek_non_ws()? {
                    Some(b'[') => {
                        self.bump();
                        Ok(())
                    }
                    Some(b) => Err(RecordError::NotCloudTrail {
                        offset: self.pos,
                        what: format!("\"Records\" is not an array (starts with {})", show(b)),
                    }),
                    None => Err(self.truncated(Inside::TopLevelObject)),
                };
            }
            self.skip_value()?;
            match self.peek_non_ws()? {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    return Err(RecordError::NotCloudTrail {
                        offset: self.pos,
                        what: "the top-level object has no \"Records\" key".into(),
                    });
                }
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!(
                            "expected ',' or '}}' after a top-level value, found {}",
                            show(b)
                        ),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
        }
    }

    /// Reads the rest of a document's top-level object after its `Records`
    /// array: further keys and values, up to and including the `}`.
    fn finish_document(&mut self) -> Result<(), RecordError> {
        loop {
            match self.peek_non_ws()? {
                Some(b'}') => {
                    self.bump();
                    return Ok(());
                }
                Some(b',') => self.bump(),
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!(
                            "expected ',' or '}}' after the Records array, found {}",
                            show(b)
                        ),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
            match self.peek_non_ws()? {
                Some(b'"') => self.read_string(&mut Vec::new(), 0)?,
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!("expected a key in the top-level object, found {}", show(b)),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
            match self.peek_non_ws()? {
                Some(b':') => self.bump(),
                Some(b) => {
                    return Err(RecordError::Invalid {
                        offset: self.pos,
                        what: format!("expected ':' after a top-level key, found {}", show(b)),
                    });
                }
                None => return Err(self.truncated(Inside::TopLevelObject)),
            }
            self.skip_value()?;
        }
    }

    /// Consumes a string (the next byte must be `"`), appending up to `keep`
    /// bytes of its raw contents (escapes not decoded) to `out`.
    fn read_string(&mut self, out: &mut Vec<u8>, keep: usize) -> Result<(), RecordError> {
        self.bump();
        let mut escaped = false;
        loop {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(self.truncated(Inside::TopLevelObject));
            }
            let mut i = 0;
            let mut end = None;
            while i < buf.len() {
                if escaped {
                    escaped = false;
                    i += 1;
                    continue;
                }
                match memchr2(b'"', b'\\', &buf[i..]) {
                    None => i = buf.len(),
                    Some(j) if buf[i + j] == b'\\' => {
                        escaped = true;
                        i += j + 1;
                    }
                    Some(j) => {
                        end = Some(i + j);
                        break;
                    }
                }
            }
            let take = end.unwrap_or(buf.len());
            let room = keep.saturating_sub(out.len()).min(take);
            out.extend_from_slice(&buf[..room]);
            match end {
                Some(e) => {
                    self.consume(e + 1);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.consume(n);
                }
            }
        }
    }

    /// Skips one JSON value of the top-level object (not a record, so rare
    /// and small: a plain byte loop is fine).
    fn skip_value(&mut self) -> Result<(), RecordError> {
        match self.peek_non_ws()? {
            Some(b'"') => return self.read_string(&mut Vec::new(), 0),
            Some(b'{' | b'[') => {}
            Some(_) => {
                // A scalar: up to the next delimiter.
                loop {
                    let buf = self.fill()?;
                    if buf.is_empty() {
                        return Err(self.truncated(Inside::TopLevelObject));
                    }
                    match buf
                        .iter()
                        .position(|&b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                    {
                        Some(i) => {
                            self.consume(i);
                            return Ok(());
                        }
                        None => {
                            let n = buf.len();
                            self.consume(n);
                        }
                    }
                }
            }
            None => return Err(self.truncated(Inside::TopLevelObject)),
        }
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(self.truncated(Inside::TopLevelObject));
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let n = end.unwrap_or(buf.len());
            self.consume(n);
            if end.is_some() {
                return Ok(());
            }
        }
    }

    /// Consumes one object (the next byte must be `{`). If it lies within
    /// the reader's current buffer it is left there (zero copy, consumed on
    /// the next read); otherwise it is copied into `out`, unless it grows past
    /// `limit`, in which case copying stops, the rest is skipped and `None`
    /// is returned.
    fn scan_object(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        inside: Inside,
    ) -> Result<Option<Placed>, RecordError> {
        let mut scan = ObjectScan::default();
        let mut fits = true;
        let mut first = true;
        loop {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(self.truncated(inside));
            }
            let end = scan.run(buf);
            let n = end.unwrap_or(buf.len());
            if first && end.is_some() && n <= limit {
                self.pending = n;
                self.pos += n as u64;
                return Ok(Some(Placed::InPlace(n)));
            }
            first = false;
            if fits {
                if out.len() + n <= limit {
                    out.extend_from_slice(&buf[..n]);
                } else {
                    fits = false;
                    out.clear();
                }
            }
            self.consume(n);
            if end.is_some() {
                return Ok(fits.then_some(Placed::Copied));
            }
        }
    }
}

/// The state of the search for the end of one object, kept across buffers.
#[derive(Default)]
struct ObjectScan {
    depth: usize,
    in_string: bool,
    /// The previous buffer ended with the backslash of an escape inside a
    /// string: the first byte of the next one is escaped.
    escaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `w` that equals `b`, and no other bit
/// (exact, no false positives: no carry crosses bytes).
#[inline(always)]
fn byte_eq_mask(w: u64, b: u8) -> u64 {
    let v = w ^ (ONES * u64::from(b));
    !(((v & LOW7) + LOW7) | v | LOW7)
}

impl ObjectScan {
    /// Scans `buf` (the continuation of the object); returns the index just
    /// after the `}` that closes it, if it is in `buf`.
    ///
    /// Eight bytes at a time, a SWAR test marks every `"`, `\`, `{` and `}`,
    /// and only the marked bytes go through the state machine: string
    /// delimiters, escapes and brace depth outside strings. This is portable
    /// safe Rust and about three times faster than a byte loop or a memchr
    /// per token on CloudTrail's dense, short strings.
    fn run(&mut self, buf: &[u8]) -> Option<usize> {
        // Marked bytes before `skip_to` are escaped and ignored.
        let mut skip_to = usize::from(std::mem::take(&mut self.escaped));
        let mut words = buf.chunks_exact(8);
        let mut base = 0;
        for word in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let w = u64::from_le_bytes(bytes);
            let mut marks = byte_eq_mask(w, b'"')
                | byte_eq_mask(w, b'\\')
                | byte_eq_mask(w, b'{')
                | byte_eq_mask(w, b'}');
            while marks != 0 {
                let p = base + (marks.trailing_zeros() / 8) as usize;
                marks &= marks - 1;
                if p >= skip_to && self.step(buf[p], p, &mut skip_to) {
                    return Some(p + 1);
                }
            }
            base += 8;
        }
        for (i, &b) in words.remainder().iter().enumerate() {
            let p = base + i;
            if matches!(b, b'"' | b'\\' | b'{' | b'}')
                && p >= skip_to
                && self.step(b, p, &mut skip_to)
            {
                return Some(p + 1);
            }
        }
        self.escaped = skip_to > buf.len();
        None
    }

    /// One structural byte at `p`; true if it closes the object.
    #[inline(always)]
    fn step(&mut self, b: u8, p: usize, skip_to: &mut usize) -> bool {
        if self.in_string {
            match b {
                b'"' => self.in_string = false,
                b'\\' => *skip_to = p + 2,
                _ => {}
            }
            false
        } else {
            match b {
                b'"' => self.in_string = true,
                b'{' => self.depth += 1,
                // A backslash outside a string is invalid JSON, left for the
                // parser to reject.
                b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    return self.depth == 0;
                }
                _ => {}
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn all_json(data: &[u8], limit: usize) -> Vec<Result<RawRecord, RecordError>> {
        json_records(data, limit).collect()
    }

    fn ok_records(data: &[u8]) -> Vec<RawRecord> {
        all_json(data, DEFAULT_MAX_RECORD_BYTES)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("all records")
    }

    /// Each record must be the exact bytes of a JSON object at its offset.
    fn check_slices(data: &[u8], records: &[RawRecord]) {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.index, i);
            let at = r.offset as usize;
            assert_eq!(&data[at..at + r.bytes.len()], &r.bytes[..]);
            let v: serde_json::Value = serde_json::from_slice(&r.bytes).expect("record is JSON");
            assert!(v.is_object());
        }
    }

    #[test]
    fn compact_gzip_fixture_has_six_records() {
        let gz = fixture("SerializerTestFileCompact.json.gz");
        let records: Vec<_> = gzip_records(&gz[..], DEFAULT_MAX_RECORD_BYTES)
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(records.len(), 6);
        let mut plain = Vec::new();
        MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
        check_slices(&plain, &records);
        assert_eq!(records[0].offset, 12, "just after {{\"Records\":[");
        let v: serde_json::Value = serde_json::from_slice(&records[5].bytes).expect("json");
        assert_eq!(v["eventName"], "eventName6");
    }

    #[test]
    fn pretty_fixture_matches_serde() {
        let data = fixture("SerializerTestFile.json");
        let records = ok_records(&data);
        check_slices(&data, &records);
        let whole: serde_json::Value = serde_json::from_slice(&data).expect("json");
        let expected = whole["Records"].as_array().expect("array");
        assert_eq!(records.len(), expected.len());
        for (r, e) in records.iter().zip(expected) {
            let v: serde_json::Value = serde_json::from_slice(&r.bytes).expect("json");
            assert_eq!(&v, e);
        }
    }

    #[test]
    fn doc_examples_fixture_has_21_records() {
        let data = fixture("doc_example_records.json");
        let records = ok_records(&data);
        assert_eq!(records.len(), 21);
        check_slices(&data, &records);
    }

    #[test]
    fn small_read_buffers_split_everywhere() {
        // A 1-byte BufReader puts every state change on a buffer boundary,
        // including the byte after a backslash.
        let data = br#" {"a":{"Records":1},"b":["]",{"}":"\""}],"c":-1.5e3 , "Records" : [ {"x":"\\","y":"\"{[","z":{"w":[1,{}]}} ,{} ] } "#;
        let big = json_records(&data[..], 1 << 10)
            .collect::<Result<Vec<_>, _>>()
            .expect("ok");
        let small = json_records(BufReader::with_capacity(1, &data[..]), 1 << 10)
            .collect::<Result<Vec<_>, _>>()
            .expect("ok");
        assert_eq!(big, small);
        assert_eq!(big.len(), 2);
        assert_eq!(big[0].bytes, br#"{"x":"\\","y":"\"{[","z":{"w":[1,{}]}}"#);
        assert_eq!(big[1].bytes, b"{}");
        check_slices(data, &big);
    }

    #[test]
    fn escaped_quotes_and_braces_inside_strings() {
        let data = br#"{"Records":[{"m":"say \"}\" and {","n":"\\"},{"o":"]}"}]}"#;
        let records = ok_records(data);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].bytes, br#"{"m":"say \"}\" and {","n":"\\"}"#);
        assert_eq!(records[1].bytes, br#"{"o":"]}"}"#);
    }

    #[test]
    fn empty_records_array() {
        assert!(ok_records(br#"{"Records":[]}"#).is_empty());
        assert!(ok_records(b"{\"Records\" :\n[ \n ]\n}").is_empty());
    }

    #[test]
    fn two_member_gzip() {
        let doc = fixture("SerializerTestFile.json");
        let (a, b) = doc.split_at(doc.len() / 2);
        let mut gz = gzip(a);
        gz.extend(gzip(b));
        let records: Vec<_> = gzip_records(&gz[..], DEFAULT_MAX_RECORD_BYTES)
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(records.len(), 6);
        check_slices(&doc, &records);
    }

    #[test]
    fn truncated_gzip() {
        let gz = fixture("SerializerTestFileCompact.json.gz");
        let half = &gz[..gz.len() / 2];
        let results: Vec<_> = gzip_records(half, DEFAULT_MAX_RECORD_BYTES).collect();
        let err = results
            .last()
            .expect("something")
            .as_ref()
            .expect_err("must fail");
        // flate2 reports the missing end of the deflate stream.
        assert!(matches!(err, RecordError::Gzip { .. }), "{err}");
        assert!(
            err.to_string().contains("uncompressed byte offset"),
            "{err}"
        );
        // Every record before the error was complete.
        for r in &results[..results.len() - 1] {
            let r = r.as_ref().expect("ok");
            serde_json::from_slice::<serde_json::Value>(&r.bytes).expect("complete record");
        }
    }

    #[test]
    fn json_cut_inside_a_record_is_truncated() {
        let data = fixture("SerializerTestFile.json");
        let cut = &data[..4000];
        let results = all_json(cut, DEFAULT_MAX_RECORD_BYTES);
        let (last, rest) = results.split_last().expect("results");
        assert!(rest.iter().all(Result::is_ok));
        match last {
            Err(RecordError::Truncated {
                offset,
                inside: Inside::Record { index, .. },
            }) => {
                assert_eq!(*offset, 4000);
                assert_eq!(*index, rest.len());
            }
            other => panic!("{other:?}"),
        }
        // Cut between records: ends inside the array.
        let doc = br#"{"Records":[{"a":1},"#;
        let err = all_json(doc, 100).pop().expect("one").expect_err("err");
        assert!(
            matches!(
                err,
                RecordError::Truncated {
                    offset: 20,
                    inside: Inside::RecordsArray
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("byte offset 20"), "{err}");
    }

    #[test]
    fn not_gzip() {
        let mut it = gzip_records(&b"{\"Records\":[]}"[..], DEFAULT_MAX_RECORD_BYTES);
        let err = it.next().expect("one").expect_err("err");
        assert!(
            matches!(err, RecordError::Gzip { offset: 0, .. }),
            "{err:?}"
        );
        assert!(it.next().is_none(), "fused after a fatal error");
    }

    #[test]
    fn not_cloudtrail() {
        for (doc, want) in [
            (&b""[..], "empty"),
            (b"  [1,2]", "not a JSON object"),
            (br#"{"Record":[{}]}"#, "no \"Records\""),
            (br#"{"Records":{"a":1}}"#, "not an array"),
            (br#"{"x":{"Records":[{}]}}"#, "no \"Records\""),
        ] {
            let err = all_json(doc, 100).pop().expect("one").expect_err("err");
            assert!(matches!(err, RecordError::NotCloudTrail { .. }), "{err:?}");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn invalid_json_mid_file() {
        // An element that is not an object.
        let doc = br#"{"Records":[{"a":1}, 42, {"b":2}]}"#;
        let results = all_json(doc, 100);
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("err");
        assert!(
            matches!(err, RecordError::Invalid { offset: 21, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("element 1 is not an object"),
            "{err}"
        );
        // Garbage between records.
        let doc = br#"{"Records":[{"a":1} x {"b":2}]}"#;
        let err = all_json(doc, 100).pop().expect("one").expect_err("err");
        assert!(
            matches!(err, RecordError::Invalid { offset: 20, .. }),
            "{err:?}"
        );
        // A trailing comma.
        let doc = br#"{"Records":[{"a":1},]}"#;
        let err = all_json(doc, 100).pop().expect("one").expect_err("err");
        assert!(err.to_string().contains("trailing ','"), "{err}");
        // Malformed inside a record: delimited by its braces, rejected later
        // by the parser, and the stream goes on.
        let doc = br#"{"Records":[{"a":,},{"b":2}]}"#;
        let records = ok_records(doc);
        assert_eq!(records.len(), 2);
        assert!(serde_json::from_slice::<serde_json::Value>(&records[0].bytes).is_err());
    }

    #[test]
    fn record_over_the_limit_is_skipped() {
        let big = "x".repeat(200);
        let doc = format!(r#"{{"Records":[{{"a":1}},{{"big":"{big}"}},{{"b":2}}]}}"#);
        let results =
            json_records(BufReader::with_capacity(16, doc.as_bytes()), 64).collect::<Vec<_>>();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().expect("ok").bytes, br#"{"a":1}"#);
        match &results[1] {
            Err(
                e @ RecordError::TooLarge {
                    index: 1,
                    offset: 20,
                    limit: 64,
                },
            ) => {
                assert!(e.to_string().contains("offset 20"));
            }
            other => panic!("{other:?}"),
        }
        let last = results[2].as_ref().expect("ok");
        assert_eq!((last.index, &last.bytes[..]), (2, &br#"{"b":2}"#[..]));
        // The limit is inclusive.
        assert_eq!(ok_records(br#"{"Records":[{"a":1}]}"#).len(), 1);
        assert!(json_records(&br#"{"Records":[{"a":1}]}"#[..], 7).all(|r| r.is_ok()));
        assert!(json_records(&br#"{"Records":[{"a":1}]}"#[..], 6).all(|r| r.is_err()));
    }

    #[test]
    fn next_parsed_falls_back_to_scanning() {
        let doc = br#"{"Records":[{"a":1},{"b":{"c":2}},{"d":3}]}"#;
        let mut stream = json_records(&doc[..], 100);
        let mut got = Vec::new();
        // The first parse is right, the second gives up, the third lies
        // about the length: only the first is taken.
        let mut calls = 0;
        while let Some(r) = stream.next_parsed(
            |rest| {
                calls += 1;
                match calls {
                    1 => Some((format!("parsed {}", rest[1] as char), 7)),
                    2 => None,
                    _ => Some(("wrong".to_owned(), 3)),
                }
            },
            |rec| format!("scanned {}", String::from_utf8_lossy(rec.bytes)),
        ) {
            let p = r.expect("ok");
            got.push((p.offset, p.index, p.value));
        }
        assert_eq!(
            got,
            [
                (12, 0, "parsed \"".to_owned()),
                (20, 1, r#"scanned {"b":{"c":2}}"#.to_owned()),
                (34, 2, r#"scanned {"d":3}"#.to_owned()),
            ]
        );
        assert_eq!(stream.bytes_read(), doc.len() as u64);
    }

    #[test]
    fn concatenated_documents_all_come_out() {
        // Two whole documents as two gzip members (`cat a.json.gz b.json.gz`),
        // the second with a key after its Records array.
        let a = fixture("SerializerTestFile.json");
        let b = br#"{"Records":[{"eventID":"b-0"},{"eventID":"b-1"}],"x":[1]}"#;
        let mut gz = gzip(&a);
        gz.extend(gzip(b));
        let records: Vec<_> = gzip_records(&gz[..], DEFAULT_MAX_RECORD_BYTES)
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(records.len(), 8, "6 of the first document, 2 of the second");
        let mut plain = a.clone();
        plain.extend_from_slice(b);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.index, i, "indexes count across documents");
            let at = r.offset as usize;
            assert_eq!(&plain[at..at + r.bytes.len()], &r.bytes[..]);
        }
        assert_eq!(records[7].bytes, br#"{"eventID":"b-1"}"#);
        // Documents back to back with whitespace, and an empty one.
        let docs = b"{\"Records\":[{\"a\":1}]}\n{\"Records\":[]}  {\"Records\":[{\"b\":2}]}\n";
        let records = ok_records(docs);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].bytes, br#"{"b":2}"#);
    }

    #[test]
    fn anything_else_after_a_document_is_an_error() {
        for (doc, want) in [
            (&br#"{"Records":[{"a":1}]} trailing"#[..], "found 't'"),
            (br#"{"Records":[{"a":1}]}{"Other":[]}"#, "no \"Records\""),
            (br#"{"Records":[{"a":1}] x"#, "after the Records array"),
        ] {
            let results = all_json(doc, 100);
            assert!(results[0].is_ok(), "the record before is kept");
            let err = results.last().expect("err").as_ref().expect_err("err");
            assert!(err.to_string().contains(want), "{err} should say {want}");
        }
        let err = all_json(br#"{"Records":[{"a":1}]"#, 100)
            .pop()
            .expect("one")
            .expect_err("truncated");
        assert!(matches!(err, RecordError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn lending_api_reuses_the_buffer_and_counts_bytes() {
        let data = fixture("SerializerTestFile.json");
        let mut stream = json_records(&data[..], DEFAULT_MAX_RECORD_BYTES);
        let mut n = 0;
        while let Some(r) = stream.next_record() {
            let r = r.expect("ok");
            assert_eq!(r.index, n);
            n += 1;
        }
        assert_eq!(n, 6);
        // Reads to the end, to find out whether another document follows.
        assert_eq!(stream.bytes_read(), data.len() as u64);
    }
}
