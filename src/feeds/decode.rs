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
    let quote =
        (spec.format.layout == crate::catalog::Layout::Delimited).then_some(spec.format.quote);
    with_archive(path, spec, limits.decompressed, |text| {
        let mut capped = LineCapped {
            inner: text,
            quote,
            quoted: false,
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
    /// The quote character of a delimited layout; `None` for fixed columns.
    quote: Option<u8>,
    quoted: bool,
    since: u64,
    max: u64,
}

impl Read for LineCapped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if Some(b) == self.quote {
                // A doubled quote inside a field toggles twice: no change, as it should.
                self.quoted = !self.quoted;
            }
            if b == b'\n' && !self.quoted {
                self.since = 0;
            } else {
                self.since += 1;
                if self.since > self.max {
                    return Err(std::io::Error::other(format!(
                        "a line or record is longer than [feeds] max_line_bytes ({} bytes): not a price list, or raise the limit",
                        self.max
                    )));
                }
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
