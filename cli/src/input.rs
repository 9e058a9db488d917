//! Reading a feed: JSON lines or CSV, from files or stdin, each line kept with where it came
//! from (`file:line`) so every report can point at it. CSV rows become the same JSON objects a
//! supplier would send, so they are validated by the same contract.

use anyhow::{Context as _, Result};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `.csv` files are CSV, everything else (and stdin) JSON lines.
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// A header row with the contract's field names, then one record per row.
    Csv,
}

/// One input line: the record's bytes and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub source: Arc<str>,
    /// 1-based line number in `source`.
    pub number: usize,
    pub data: Vec<u8>,
}

impl Line {
    /// `file:line`, as reports show it.
    pub fn location(&self) -> String {
        format!("{}:{}", self.source, self.number)
    }
}

/// A line that could not even be turned into a record (a malformed CSV row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub source: Arc<str>,
    pub number: usize,
    pub message: String,
}

/// Reads every named file (`-` is stdin), in order.
pub fn read_all(paths: &[String], format: Format) -> Result<(Vec<Line>, Vec<Unreadable>)> {
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    let stdin_only = ["-".to_owned()];
    let paths = if paths.is_empty() {
        &stdin_only[..]
    } else {
        paths
    };
    for path in paths {
        let (name, bytes) = if path == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            ("<stdin>".to_owned(), buf)
        } else {
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            (path.clone(), bytes)
        };
        let format = match format {
            Format::Auto if is_csv_name(path) => Format::Csv,
            Format::Auto => Format::Jsonl,
            f => f,
        };
        let (l, b) = parse(&name, &bytes, format);
        lines.extend(l);
        bad.extend(b);
    }
    Ok((lines, bad))
}

fn is_csv_name(path: &str) -> bool {
    Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Splits `bytes` into lines (LF or CRLF; a final newline ends the last line rather than
/// starting an empty one) and, for CSV, turns rows into JSON records.
pub fn parse(source: &str, bytes: &[u8], format: Format) -> (Vec<Line>, Vec<Unreadable>) {
    let source: Arc<str> = Arc::from(source);
    let mut raw: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if raw.last().is_some_and(|l| l.is_empty()) {
        raw.pop();
    }
    let raw = raw.into_iter().map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    match format {
        Format::Csv => csv_lines(&source, raw),
        Format::Jsonl | Format::Auto => (
            raw.enumerate()
                .map(|(i, data)| Line {
                    source: source.clone(),
                    number: i + 1,
                    data: data.to_vec(),
                })
                .collect(),
            Vec::new(),
        ),
    }
}

fn csv_lines<'a>(
    source: &Arc<str>,
    mut raw: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Line>, Vec<Unreadable>) {
    let (mut lines, mut bad) = (Vec::new(), Vec::new());
    let unreadable = |number, message: String| Unreadable {
        source: source.clone(),
        number,
        message,
    };
    let header = match raw.next().map(|h| split_csv(&String::from_utf8_lossy(h))) {
        Some(Ok(h)) if h.iter().any(|f| !f.trim().is_empty()) => h,
        Some(Ok(_)) | None => {
            bad.push(unreadable(1, "the CSV has no header row".into()));
            return (lines, bad);
        }
        Some(Err(e)) => {
            bad.push(unreadable(
                1,
                format!("the CSV header row is malformed: {e}"),
            ));
            return (lines, bad);
        }
    };
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_owned()).collect();
    for (i, row) in raw.enumerate() {
        let number = i + 2;
        let Ok(text) = std::str::from_utf8(row) else {
            // Left as bytes: the contract's own not_utf8 reason reports it.
            lines.push(Line {
                source: source.clone(),
                number,
                data: row.to_vec(),
            });
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match split_csv(text) {
            Ok(cells) if cells.len() == header.len() => lines.push(Line {
                source: source.clone(),
                number,
                data: row_to_json(&header, &cells).into_bytes(),
            }),
            Ok(cells) => bad.push(unreadable(
                number,
                format!(
                    "the row has {} fields, the header has {}",
                    cells.len(),
                    header.len()
                ),
            )),
            Err(e) => bad.push(unreadable(number, e)),
        }
    }
    (lines, bad)
}

/// Splits one CSV row, read by the `csv` crate (RFC 4180 quoting). Each row is read on its
/// own, so a quoted field may not span lines: a broken row cannot swallow the ones after it and
/// every report keeps its line number.
pub fn split_csv(row: &str) -> Result<Vec<String>, String> {
    check_quotes(row)?;
    // Only `\n` ends a record: a stray `\r` inside a row is data, as it was before.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(row.as_bytes());
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(|e| e.to_string())? {
        // An empty row is one empty field.
        return Ok(vec![String::new()]);
    }
    Ok(record.iter().map(str::to_owned).collect())
}

/// Rejects what the `csv` crate would quietly accept: a quote inside an unquoted field (kept
/// as data) and text after a closing quote (glued onto the field, so `"9.9"0` would become
/// `9.90`) and a quote left open at the end of the row (read as if closed). Whitespace after a
/// closing quote is allowed, as before. Only the quotes' places are checked here; the crate
/// does the splitting and unescaping.
fn check_quotes(row: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
    }
    let mut at = At::FieldStart;
    for c in row.chars() {
        at = match (at, c) {
            (At::Quoted, '"') => At::AfterQuote,
            (At::Quoted, _) => At::Quoted,
            // `""` inside a quoted field is an escaped quote.
            (At::FieldStart | At::AfterQuote, '"') => At::Quoted,
            (_, ',') => At::FieldStart,
            (At::Unquoted, '"') => return Err("a quote in the middle of an unquoted field".into()),
            (At::AfterQuote, c) if !c.is_whitespace() => {
                return Err("text after a closing quote".into());
            }
            (At::AfterQuote, _) => At::AfterQuote,
            (At::FieldStart | At::Unquoted, _) => At::Unquoted,
        };
    }
    if at == At::Quoted {
        return Err("a quoted field is not closed on its line".into());
    }
    Ok(())
}

/// The JSON object a CSV row stands for: empty cells are absent fields; quantities that are
/// JSON numbers stay numbers; prices stay decimal strings (their exact digits); everything
/// else is a string. Unknown columns pass through, so the contract names them.
fn row_to_json(header: &[String], cells: &[String]) -> String {
    let mut out = String::from("{");
    for (name, cell) in header.iter().zip(cells) {
        let value = cell.trim();
        if value.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(name.clone()).to_string());
        out.push(':');
        let is_number = serde_json::from_str::<serde_json::Number>(value).is_ok();
        if matches!(name.as_str(), "quantity" | "inventory") && is_number {
            out.push_str(value);
        } else {
            out.push_str(&serde_json::Value::String(value.to_owned()).to_string());
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_their_numbers_and_a_final_newline_adds_no_line() {
        let (lines, bad) = parse("f.jsonl", b"{\"a\":1}\r\n\n{\"b\":2}\n", Format::Jsonl);
        assert!(bad.is_empty());
        let got: Vec<(usize, &[u8])> = lines.iter().map(|l| (l.number, &l.data[..])).collect();
        assert_eq!(
            got,
            vec![
                (1, &b"{\"a\":1}"[..]),
                (2, &b""[..]),
                (3, &b"{\"b\":2}"[..])
            ]
        );
        assert_eq!(lines[2].location(), "f.jsonl:3");
    }

    #[test]
    fn csv_rows_become_the_contracts_json_objects() {
        let csv = "product_id,quantity,price,currency,occurred_at\n\
                   SKU-1,5,9.90,EUR,2026-01-01T00:00:00Z\n\
                   \"SKU-2\",,\"1,00\",,\n\
                   SKU-3,ten,1,USD,\n";
        let (lines, bad) = parse("f.csv", csv.as_bytes(), Format::Csv);
        assert!(bad.is_empty(), "{bad:?}");
        let text: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8(l.data.clone()).expect("utf-8"))
            .collect();
        assert_eq!(
            text,
            vec![
                r#"{"product_id":"SKU-1","quantity":5,"price":"9.90","currency":"EUR","occurred_at":"2026-01-01T00:00:00Z"}"#,
                r#"{"product_id":"SKU-2","price":"1,00"}"#,
                r#"{"product_id":"SKU-3","quantity":"ten","price":"1","currency":"USD"}"#,
            ]
        );
        assert_eq!(
            lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    #[test]
    fn csv_quoting_follows_rfc_4180_and_a_row_stays_on_its_line() {
        let cells = |row| split_csv(row).map(|c| c.join("|"));
        assert_eq!(
            cells(r#"a,"b,c","say ""hi""",,"#),
            Ok(r#"a|b,c|say "hi"||"#.to_owned())
        );
        assert_eq!(cells(r#""a" ,b"#), Ok("a |b".to_owned()));
        assert_eq!(cells("a\rb,c"), Ok("a\rb|c".to_owned()));
        assert_eq!(cells(""), Ok(String::new()));
        assert_eq!(
            cells(r#"a,"b"#),
            Err("a quoted field is not closed on its line".to_owned())
        );
    }

    #[test]
    fn quotes_the_csv_crate_would_accept_are_still_refused() {
        assert_eq!(
            split_csv(r#"SKU-1,9"5,1"#),
            Err("a quote in the middle of an unquoted field".to_owned())
        );
        assert_eq!(
            split_csv(r#"SKU-1,"9.9"0,1"#),
            Err("text after a closing quote".to_owned())
        );
        let csv = "product_id,price\nSKU-1,\"9.9\"0\nSKU-2,1\nSKU-3,a\"b\n";
        let (lines, bad) = parse("f.csv", csv.as_bytes(), Format::Csv);
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [3]);
        let bad: Vec<(usize, &str)> = bad.iter().map(|b| (b.number, &b.message[..])).collect();
        assert_eq!(
            bad,
            [
                (2, "text after a closing quote"),
                (4, "a quote in the middle of an unquoted field")
            ]
        );
    }

    #[test]
    fn malformed_csv_rows_are_reported_with_their_line() {
        let csv = "product_id,quantity,price\nSKU-1,1\nSKU-2,1,\"2\nSKU-3,1,2\n";
        let (lines, bad) = parse("f.csv", csv.as_bytes(), Format::Csv);
        assert_eq!(lines.len(), 1);
        assert_eq!(bad.iter().map(|b| b.number).collect::<Vec<_>>(), vec![2, 3]);
        assert!(bad[0].message.contains("2 fields"), "{}", bad[0].message);
    }
}
