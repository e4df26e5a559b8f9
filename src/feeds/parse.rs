//! Streaming CSV parser for price feeds, driven by the catalog's `format` and `columns`.
//!
//! It reads any `Read` (the spooled download) record by record and hands rows over in
//! batches, so memory stays flat whatever the file size. Bad rows are counted and the first
//! few kept with their line numbers; the caller decides whether the file as a whole is usable.
//! It never panics on any input (there is a fuzz target for that).

use crate::catalog::{ColumnRef, Columns, FeedFormat, Layout};
use crate::store::prices::{Action, PriceRow};
use crate::text::excerpt;
use std::io::Read;

/// How many bad rows are quoted in an issue message.
pub const KEPT_ERRORS: usize = 5;

/// What the parser saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseReport {
    /// Good rows handed to the sink.
    pub rows: u64,
    /// Rows that could not be used.
    pub bad_rows: u64,
    /// The first [`KEPT_ERRORS`] problems, with line numbers.
    pub first_errors: Vec<String>,
    /// Whether the file had a header row that was read.
    pub header_seen: bool,
}

impl ParseReport {
    /// Bad rows as a fraction of all data rows.
    pub fn error_rate(&self) -> f64 {
        let total = self.rows + self.bad_rows;
        if total == 0 {
            0.0
        } else {
            self.bad_rows as f64 / total as f64
        }
    }

    fn bad(&mut self, line: u64, what: String) {
        self.bad_rows += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(format!("line {line}: {what}"));
        }
    }
}

/// Why a file could not be parsed at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The header row lacks a configured column.
    #[error("the header row has no column \"{wanted}\" (columns found: {found})")]
    MissingColumn {
        /// The configured name.
        wanted: String,
        /// What the header has.
        found: String,
    },
    /// The reader failed (I/O error while reading the spooled file).
    #[error("reading the file failed at line {line}: {message}")]
    Read {
        /// Where.
        line: u64,
        /// What.
        message: String,
    },
    /// The sink asked to stop (the database side failed).
    #[error("stopped")]
    Stopped,
}

/// Where each configured column is found in a record.
struct Plan {
    sku: Locator,
    price: Locator,
    stock: Option<Locator>,
    mpn: Option<Locator>,
    ean: Option<Locator>,
    description: Option<Locator>,
    currency: Option<Locator>,
    action: Option<Locator>,
}

#[derive(Clone, Copy)]
enum Locator {
    /// 0-based field index (delimited layout).
    Field(usize),
    /// 0-based first character and character count (fixed layout).
    Chars(usize, usize),
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn header_text(h: &[u8]) -> String {
    String::from_utf8_lossy(trim(h))
        .trim_start_matches('\u{feff}')
        .trim()
        .to_string()
}

fn resolve(col: &ColumnRef, header: Option<&csv::ByteRecord>) -> Result<Locator, ParseError> {
    match col {
        ColumnRef::Position(p) => Ok(Locator::Field(p.saturating_sub(1))),
        ColumnRef::Span { start, length } => Ok(Locator::Chars(start.saturating_sub(1), *length)),
        ColumnRef::Name(name) => {
            let header = header.ok_or_else(|| ParseError::MissingColumn {
                wanted: name.clone(),
                found: "no header row".into(),
            })?;
            let want = name.trim().to_lowercase();
            header
                .iter()
                .position(|h| header_text(h).to_lowercase() == want)
                .map(Locator::Field)
                .ok_or_else(|| ParseError::MissingColumn {
                    wanted: name.clone(),
                    found: header
                        .iter()
                        .take(20)
                        .map(|h| format!("\"{}\"", excerpt(&header_text(h))))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        }
    }
}

fn plan(columns: &Columns, header: Option<&csv::ByteRecord>) -> Result<Plan, ParseError> {
    let opt = |c: &Option<ColumnRef>| c.as_ref().map(|c| resolve(c, header)).transpose();
    Ok(Plan {
        sku: resolve(&columns.sku, header)?,
        price: resolve(&columns.price, header)?,
        stock: opt(&columns.stock)?,
        mpn: opt(&columns.mpn)?,
        ean: opt(&columns.ean)?,
        description: opt(&columns.description)?,
        currency: opt(&columns.currency)?,
        action: opt(&columns.action)?,
    })
}

/// Parses `input` (UTF-8 text: decoding happens before), handing rows to `sink` in batches
/// of `batch` rows. `sink` returns false to stop early.
pub fn parse<R: Read>(
    input: R,
    format: &FeedFormat,
    columns: &Columns,
    batch: usize,
    sink: impl FnMut(Vec<PriceRow>) -> bool,
) -> Result<ParseReport, ParseError> {
    match format.layout {
        Layout::Delimited => parse_delimited(input, format, columns, batch, sink),
        Layout::Fixed => parse_fixed(input, format, columns, batch, sink),
    }
}

/// Collects rows into batches and counts them.
struct Batcher<F> {
    rows: Vec<PriceRow>,
    batch: usize,
    sink: F,
    report: ParseReport,
}

impl<F: FnMut(Vec<PriceRow>) -> bool> Batcher<F> {
    fn push(&mut self, line: u64, row: Result<PriceRow, String>) -> Result<(), ParseError> {
        match row {
            Ok(r) => {
                self.report.rows += 1;
                self.rows.push(r);
                if self.rows.len() >= self.batch {
                    let full = std::mem::replace(&mut self.rows, Vec::with_capacity(self.batch));
                    if !(self.sink)(full) {
                        return Err(ParseError::Stopped);
                    }
                }
            }
            Err(what) => self.report.bad(line, what),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ParseReport, ParseError> {
        if !self.rows.is_empty() && !(self.sink)(std::mem::take(&mut self.rows)) {
            return Err(ParseError::Stopped);
        }
        Ok(self.report)
    }
}

fn parse_delimited<R: Read>(
    input: R,
    format: &FeedFormat,
    columns: &Columns,
    batch: usize,
    sink: impl FnMut(Vec<PriceRow>) -> bool,
) -> Result<ParseReport, ParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .quote(format.quote)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(input);
    let mut out = Batcher {
        rows: Vec::with_capacity(batch),
        batch,
        sink,
        report: ParseReport::default(),
    };
    let mut record = csv::ByteRecord::new();
    let read = |reader: &mut csv::Reader<R>, record: &mut csv::ByteRecord| {
        reader
            .read_byte_record(record)
            .map_err(|e| ParseError::Read {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })
    };

    let header = if format.header {
        if !read(&mut reader, &mut record)? {
            return Ok(out.report);
        }
        out.report.header_seen = true;
        Some(record.clone())
    } else {
        None
    };
    let plan = plan(columns, header.as_ref())?;
    let mut first = !format.header;
    while read(&mut reader, &mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        // A BOM in front of a headerless file would otherwise stick to the first SKU.
        if first {
            first = false;
            if let Some(f) = record.get(0)
                && f.starts_with(b"\xef\xbb\xbf")
            {
                let mut fixed = csv::ByteRecord::new();
                fixed.push_field(&f[3..]);
                for field in record.iter().skip(1) {
                    fixed.push_field(field);
                }
                record = fixed;
            }
        }
        if record.iter().all(|f| trim(f).is_empty()) {
            continue;
        }
        let get = |loc: Locator| match loc {
            Locator::Field(i) => record.get(i).map(|f| String::from_utf8_lossy(trim(f))),
            Locator::Chars(..) => None,
        };
        out.push(line, row(&plan, record.len(), get, format.decimal))?;
    }
    out.finish()
}

fn parse_fixed<R: Read>(
    input: R,
    format: &FeedFormat,
    columns: &Columns,
    batch: usize,
    sink: impl FnMut(Vec<PriceRow>) -> bool,
) -> Result<ParseReport, ParseError> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, input);
    let mut out = Batcher {
        rows: Vec::with_capacity(batch),
        batch,
        sink,
        report: ParseReport::default(),
    };
    let plan = plan(columns, None)?;
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| ParseError::Read {
                line: line_no + 1,
                message: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text
            .trim_end_matches(['\n', '\r'])
            .trim_start_matches('\u{feff}');
        if line_no == 1 && format.header {
            out.report.header_seen = true;
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        let chars: Vec<char> = text.chars().collect();
        let get = |loc: Locator| match loc {
            Locator::Chars(start, len) if start < chars.len() => {
                let end = (start + len).min(chars.len());
                Some(std::borrow::Cow::Owned(
                    chars[start..end]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string(),
                ))
            }
            _ => None,
        };
        out.push(line_no, row(&plan, chars.len(), get, format.decimal))?;
    }
    out.finish()
}

fn describe(loc: Locator, width: usize) -> String {
    match loc {
        Locator::Field(i) => format!("column {} of {width}", i + 1),
        Locator::Chars(start, len) => format!(
            "characters {}..{} of a {width}-character line",
            start + 1,
            start + len
        ),
    }
}

fn row<'a>(
    plan: &Plan,
    width: usize,
    get: impl Fn(Locator) -> Option<std::borrow::Cow<'a, str>>,
    decimal: u8,
) -> Result<PriceRow, String> {
    let required = |loc: Locator, name: &str| {
        get(loc).ok_or_else(|| format!("no {name} ({})", describe(loc, width)))
    };
    let optional = |loc: Option<Locator>| {
        loc.and_then(&get)
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let sku = required(plan.sku, "part number")?;
    if sku.is_empty() {
        return Err("empty part number".into());
    }
    let sku = sku.into_owned();
    let action = match plan.action {
        Some(loc) => {
            let raw = required(loc, "action code")?;
            Some(Action::parse(&raw).ok_or_else(|| {
                format!(
                    "part {}: action \"{}\" is not A (add), C (change) or D (delete)",
                    excerpt(&sku),
                    excerpt(&raw)
                )
            })?)
        }
        None => None,
    };
    if action == Some(Action::Delete) {
        return Ok(PriceRow {
            sku,
            action,
            ..PriceRow::default()
        });
    }
    let raw_price = required(plan.price, "price")?;
    let price = normalize_price(raw_price.as_bytes(), decimal).map_err(|e| {
        format!(
            "part {}: price \"{}\" {e}",
            excerpt(&sku),
            excerpt(&raw_price)
        )
    })?;
    let stock = match plan.stock {
        Some(loc) => {
            let raw = required(loc, "stock")?;
            parse_stock(raw.as_bytes(), decimal)
                .map_err(|e| format!("part {}: stock \"{}\" {e}", excerpt(&sku), excerpt(&raw)))?
        }
        None => None,
    };
    Ok(PriceRow {
        sku,
        price,
        stock,
        mpn: optional(plan.mpn),
        ean: optional(plan.ean),
        description: optional(plan.description),
        currency: optional(plan.currency).map(|c| c.to_ascii_uppercase()),
        action,
    })
}

/// `"0000123,45"` (decimal comma) → `"123.45"`; `"1.234,5"` → `"1234.50"`; `"7"` → `"7.00"`.
/// Exact: the digits are kept as text, never passed through a float.
pub fn normalize_price(raw: &[u8], decimal: u8) -> Result<String, &'static str> {
    let group = if decimal == b',' { b'.' } else { b',' };
    if raw.is_empty() {
        return Err("is empty");
    }
    if raw[0] == b'-' {
        return Err("is negative");
    }
    let raw = raw.strip_prefix(b"+").unwrap_or(raw);
    let (int, frac) = match raw.iter().rposition(|&b| b == decimal) {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &b""[..]),
    };
    let mut int_digits = String::with_capacity(int.len());
    for &b in int {
        match b {
            b'0'..=b'9' => int_digits.push(b as char),
            b if b == group => {}
            b' ' => {}
            _ => return Err("is not a number"),
        }
    }
    if !frac.iter().all(u8::is_ascii_digit) || (int_digits.is_empty() && frac.is_empty()) {
        return Err("is not a number");
    }
    let int_digits = int_digits.trim_start_matches('0');
    let mut out = String::with_capacity(int_digits.len() + frac.len() + 2);
    out.push_str(if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    });
    out.push('.');
    let frac = std::str::from_utf8(frac)
        .unwrap_or("")
        .trim_end_matches('0');
    out.push_str(frac);
    for _ in frac.len()..2 {
        out.push('0');
    }
    Ok(out)
}

/// Stock counts: `"12"`, `"0012"`, `"12,00"`, `">100"` / `"100+"` (read as 100), empty → none.
pub fn parse_stock(raw: &[u8], decimal: u8) -> Result<Option<i64>, &'static str> {
    if raw.is_empty() {
        return Ok(None);
    }
    let raw = raw.strip_prefix(b">").unwrap_or(raw);
    let raw = raw.strip_suffix(b"+").unwrap_or(raw);
    let (neg, raw) = match raw.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, raw),
    };
    let int = match raw.iter().position(|&b| b == decimal) {
        Some(i) if raw[i + 1..].iter().all(|&b| b == b'0') => &raw[..i],
        Some(_) => return Err("is not a whole number"),
        None => raw,
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return Err("is not a number");
    }
    let digits = std::str::from_utf8(int).map_err(|_| "is not a number")?;
    let n: i64 = digits.parse().map_err(|_| "is too large")?;
    Ok(Some(if neg { -n } else { n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(sku: ColumnRef, price: ColumnRef, stock: Option<ColumnRef>) -> Columns {
        Columns {
            sku,
            price,
            stock,
            mpn: None,
            ean: None,
            description: None,
            currency: None,
            action: None,
        }
    }

    fn p(sku: &str, price: &str, stock: Option<i64>) -> PriceRow {
        PriceRow {
            sku: sku.into(),
            price: price.into(),
            stock,
            ..PriceRow::default()
        }
    }

    fn run(text: &str, format: &FeedFormat, columns: &Columns) -> (Vec<PriceRow>, ParseReport) {
        let mut all = Vec::new();
        let report = parse(text.as_bytes(), format, columns, 2, |b| {
            all.extend(b);
            true
        })
        .unwrap();
        (all, report)
    }

    #[test]
    fn prices_are_normalised_exactly() {
        assert_eq!(normalize_price(b"0000123.45", b'.').unwrap(), "123.45");
        assert_eq!(normalize_price(b"1.234,5", b',').unwrap(), "1234.50");
        assert_eq!(normalize_price(b"7", b'.').unwrap(), "7.00");
        assert_eq!(normalize_price(b"0,125", b',').unwrap(), "0.125");
        assert_eq!(normalize_price(b",5", b',').unwrap(), "0.50");
        assert!(normalize_price(b"-1.00", b'.').is_err());
        assert!(normalize_price(b"abc", b'.').is_err());
        assert!(normalize_price(b"", b'.').is_err());
        assert!(normalize_price(b",", b',').is_err());
    }

    #[test]
    fn dutch_header_with_decimal_comma_is_read_by_name() {
        let format = FeedFormat {
            delimiter: b';',
            decimal: b',',
            ..FeedFormat::default()
        };
        let columns = cols(
            ColumnRef::Name("Artikel".into()),
            ColumnRef::Name("Prijs".into()),
            Some(ColumnRef::Name("Voorraad".into())),
        );
        let text = "\u{feff}Artikel;Omschrijving;Prijs;Voorraad\n  AB-1  ;Muis;0012,50;7\nCD-2;Kabel;3,00;\n";
        let (rows, report) = run(text, &format, &columns);
        assert_eq!(report.rows, 2);
        assert_eq!(rows[0], p("AB-1", "12.50", Some(7)));
        assert_eq!(rows[1], p("CD-2", "3.00", None));
    }

    #[test]
    fn positional_columns_and_bad_rows_are_counted_with_line_numbers() {
        let format = FeedFormat {
            header: false,
            delimiter: b'|',
            ..FeedFormat::default()
        };
        let columns = cols(ColumnRef::Position(2), ColumnRef::Position(3), None);
        let text = "x|A1|1.00|extra\nx|A2|oops\nx||2.00\nx|A3|3.5\n";
        let (rows, report) = run(text, &format, &columns);
        assert_eq!(
            rows.iter().map(|r| r.sku.as_str()).collect::<Vec<_>>(),
            ["A1", "A3"]
        );
        assert_eq!(report.bad_rows, 2);
        assert!(
            report.first_errors[0].starts_with("line 2: part A2: price \"oops\""),
            "{:?}",
            report.first_errors
        );
        assert_eq!(report.first_errors[1], "line 3: empty part number");
    }

    #[test]
    fn a_missing_header_column_is_named() {
        let columns = cols(
            ColumnRef::Name("sku".into()),
            ColumnRef::Name("price".into()),
            None,
        );
        let err = parse(
            "sku,cost\nA,1\n".as_bytes(),
            &FeedFormat::default(),
            &columns,
            10,
            |_| true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the header row has no column \"price\" (columns found: \"sku\", \"cost\")"
        );
    }
}

#[cfg(test)]
mod no_panic {
    //! A bounded, seeded stand-in for the fuzz target (`fuzz/`), run with every test suite.
    use super::*;
    use crate::catalog::Layout;
    use rand::{Rng, SeedableRng};

    #[test]
    fn random_bytes_never_panic_the_parser_in_any_layout() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let alphabet = b"0123456789,.;|~\t\"\n\r -+ADCx\xc3\xa9\xef\xbb\xbf<>";
        for round in 0..3000 {
            let len = (rng.next_u32() % 300) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next_u32();
                    if r % 7 == 0 {
                        r as u8
                    } else {
                        alphabet[(r as usize / 7) % alphabet.len()]
                    }
                })
                .collect();
            let fixed = round % 3 == 0;
            let format = FeedFormat {
                delimiter: [b',', b';', b'|'][round % 3],
                header: round % 2 == 0,
                decimal: if round % 4 < 2 { b',' } else { b'.' },
                layout: if fixed {
                    Layout::Fixed
                } else {
                    Layout::Delimited
                },
                ..FeedFormat::default()
            };
            let col = |n: usize| {
                if fixed {
                    ColumnRef::Span {
                        start: n * 3 + 1,
                        length: 3,
                    }
                } else {
                    ColumnRef::Position(n + 1)
                }
            };
            let columns = Columns {
                sku: col(0),
                price: col(1),
                stock: Some(col(2)),
                mpn: None,
                ean: None,
                description: None,
                currency: None,
                action: (round % 5 == 0).then(|| col(3)),
            };
            let _ = parse(text.as_slice(), &format, &columns, 16, |_| true);
        }
    }
}
