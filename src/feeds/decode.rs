//! From the spooled download to UTF-8 text: archive (zip member or gzip), a cap on the
//! decompressed size (zip bombs), and the character encoding. Everything streams; nothing is
//! unpacked to disk or memory as a whole.

use crate::catalog::{Archive, FeedSpec};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// How much text a feed may unpack to, and how long one line or record may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `[feeds] max_decompressed_bytes`, for archives.
    pub decompressed: u64,
    /// `[feeds] max_line_bytes`.
    pub line: u64,
}

/// Runs `f` with a reader of the feed's text, each line or record at most `limits.line`
/// bytes. Errors name what could not be opened.
pub fn with_text<T>(
    path: &Path,
    spec: &FeedSpec,
    limits: Limits,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T, String> {
    let csv = (spec.format.layout == crate::catalog::Layout::Delimited)
        .then_some((spec.format.quote, spec.format.delimiter));
    with_archive(path, spec, limits.decompressed, |text| {
        let mut capped = LineCapped {
            inner: text,
            csv,
            state: Field::Start,
            since: 0,
            max: limits.line,
        };
        f(&mut capped)
    })
}

fn with_archive<T>(
    path: &Path,
    spec: &FeedSpec,
    max_decompressed: u64,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T, String> {
    let file = File::open(path).map_err(|e| format!("cannot open the download: {e}"))?;
    match spec.archive() {
        Archive::None | Archive::Auto => Ok(decode(
            BufReader::with_capacity(256 * 1024, file),
            spec,
            u64::MAX,
            f,
        )),
        Archive::Gzip => {
            let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, file));
            Ok(decode(gz, spec, max_decompressed, f))
        }
        Archive::Zip => {
            let mut zip = zip::ZipArchive::new(BufReader::new(file))
                .map_err(|e| format!("the download is not a readable zip archive ({e})"))?;
            let index = pick_member(&mut zip, spec.format.member.as_deref())?;
            let member = zip
                .by_index(index)
                .map_err(|e| format!("cannot read the zip archive ({e})"))?;
            Ok(decode(member, spec, max_decompressed, f))
        }
    }
}

fn pick_member<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    wanted: Option<&str>,
) -> Result<usize, String> {
    let mut files: Vec<(usize, String)> = (0..zip.len())
        .filter_map(|i| {
            let f = zip.by_index(i).ok()?;
            let name = f.name().ok()?.to_string();
            (!f.is_dir()).then_some((i, name))
        })
        .collect();
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let names = || {
        files
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(pattern) => {
            let glob = glob::Pattern::new(pattern)
                .map_err(|e| format!("`{pattern}` is not a valid glob ({e})"))?;
            let opts = glob::MatchOptions {
                case_sensitive: false,
                ..Default::default()
            };
            files
                .iter()
                .find(|(_, name)| {
                    let base = name.rsplit('/').next().unwrap_or(name);
                    glob.matches_with(name, opts) || glob.matches_with(base, opts)
                })
                .map(|(i, _)| *i)
                .ok_or_else(|| {
                    format!(
                        "the zip archive has no member matching `{pattern}` (it holds: {})",
                        names()
                    )
                })
        }
        None => match files.as_slice() {
            [(i, _)] => Ok(*i),
            [] => Err("the zip archive is empty".into()),
            _ => Err(format!(
                "the zip archive holds several files ({}); name one with `format.member`",
                names()
            )),
        },
    }
}

fn decode<R: Read, T>(
    inner: R,
    spec: &FeedSpec,
    max: u64,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    let limited = Capped {
        inner,
        left: max,
        max,
    };
    let encoding = spec.format.encoding;
    if encoding == encoding_rs::UTF_8 {
        // The parser reads UTF-8 itself (lossily, and drops a BOM): no transcoding pass.
        let mut r = limited;
        f(&mut r)
    } else {
        let mut r = encoding_rs_io::DecodeReaderBytesBuilder::new()
            .encoding(Some(encoding))
            .bom_override(true)
            .build(limited);
        f(&mut r)
    }
}

/// Fails the read once a line, or a record (a quoted field may span lines), runs past `max`
/// bytes: the parser's buffers grow with the record, so this bounds them whatever the shape
/// of the file (one 2 GiB line, a quote that never closes).
struct LineCapped<'a> {
    inner: &'a mut dyn Read,
    /// The quote and delimiter of a delimited layout; `None` for fixed columns.
    csv: Option<(u8, u8)>,
    state: Field,
    since: u64,
    max: u64,
}

/// Where a delimited record stands, as the CSV reader sees it: only a quote at the start of
/// a field opens a quoted field, so an inch mark in `24" Monitor` does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Start,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the end of it, or the first of a doubled `""`.
    QuoteInQuoted,
}

impl LineCapped<'_> {
    /// Whether `b` ends a record.
    fn ends_record(&mut self, b: u8) -> bool {
        let Some((quote, delimiter)) = self.csv else {
            return b == b'\n';
        };
        let (next, ends) = match (self.state, b) {
            (Field::Quoted, q) if q == quote => (Field::QuoteInQuoted, false),
            (Field::Quoted, _) => (Field::Quoted, false),
            (Field::QuoteInQuoted, q) if q == quote => (Field::Quoted, false),
            (Field::Start, q) if q == quote => (Field::Quoted, false),
            (_, b'\n') => (Field::Start, true),
            (_, d) if d == delimiter => (Field::Start, false),
            _ => (Field::Unquoted, false),
        };
        self.state = next;
        ends
    }
}

impl Read for LineCapped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if self.ends_record(b) {
                self.since = 0;
                continue;
            }
            self.since += 1;
            if self.since > self.max {
                return Err(std::io::Error::other(format!(
                    "a line or record is longer than [feeds] max_line_bytes ({} bytes): not a price list, or raise the limit",
                    self.max
                )));
            }
        }
        Ok(n)
    }
}

/// Fails the read once more than `max` bytes came out of the decompressor.
struct Capped<R> {
    inner: R,
    left: u64,
    max: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "the unpacked file exceeds [feeds] max_decompressed_bytes ({} bytes)",
                self.max
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(text: &[u8], quote: Option<u8>, max: u64) -> std::io::Result<Vec<u8>> {
        let mut inner: &[u8] = text;
        let mut r = LineCapped {
            inner: &mut inner,
            csv: quote.map(|q| (q, b',')),
            state: Field::Start,
            since: 0,
            max,
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_line_or_a_record_longer_than_the_limit_fails_the_read() {
        assert!(capped(b"a,1\nb,2\n", Some(b'"'), 8).is_ok());
        let long = [b"x".repeat(100), b"\n".to_vec()].concat();
        let err = capped(&long, Some(b'"'), 64).unwrap_err().to_string();
        assert!(err.contains("max_line_bytes"), "{err}");
        // Short lines inside a quote that never closes are one record.
        let open = [b"\"".to_vec(), b"ab\n".repeat(40)].concat();
        assert!(capped(&open, Some(b'"'), 64).is_err());
        assert!(
            capped(&open, None, 64).is_ok(),
            "fixed columns have no quotes"
        );
        // Doubled quotes inside a field do not leave it open.
        assert!(capped(b"\"a \"\"b\"\" c\",1\nx,2\n", Some(b'"'), 16).is_ok());
        // An inch mark inside an unquoted field opens nothing, however much follows.
        let inches = [
            b"M-1,Monitor 24\" wide,199.00\n".to_vec(),
            b"a,b,1\n".repeat(40),
        ]
        .concat();
        assert!(capped(&inches, Some(b'"'), 64).is_ok());
    }
}
