//! The one output choice of every listing verb: `--format table|json|csv`.
//!
//! A verb builds a [`Listing`] — column headers, one row of cell strings
//! per item, and notes printed under a table — plus its typed rows for
//! JSON. `table` aligns the columns for a terminal and prints the notes;
//! `csv` prints the same columns as RFC 4180 CSV (header first, no notes,
//! for spreadsheets and `cut`); `json` prints the typed rows, which carry
//! every field, not only the table's columns.

use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a summary line (for people).
    #[default]
    Table,
    /// A JSON array of the full rows (for programs).
    Json,
    /// The table's columns as CSV with a header row (for spreadsheets).
    Csv,
}

/// `--format`, flattened into each listing verb's arguments. `--json` is
/// kept, hidden, as the spelling some verbs had before.
#[derive(Args, Clone, Copy, Debug)]
pub struct FormatArg {
    /// Output: table, json or csv.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Deprecated: same as `--format json`.
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

impl FormatArg {
    pub fn get(self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

/// A table as the verbs print it.
#[derive(Debug, Default)]
pub struct Listing {
    pub headers: Vec<String>,
    /// Columns (by index) aligned to the right: numbers.
    pub right: Vec<usize>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (summary, legend); never in CSV.
    pub notes: Vec<String>,
}

impl Listing {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            ..Self::default()
        }
    }

    pub fn right_aligned(mut self, columns: &[usize]) -> Self {
        self.right = columns.to_vec();
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Aligned columns (the last one unpadded), then the notes.
    pub fn render_table(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let last = self.headers.len().saturating_sub(1);
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = widths[i].saturating_sub(c.chars().count());
                if self.right.contains(&i) {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    if i < last {
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let mut out = line(&mut self.headers.iter().map(String::as_str));
        for r in &self.rows {
            out.push_str(&line(&mut r.iter().map(String::as_str)));
        }
        for n in &self.notes {
            out.push_str(n);
            out.push('\n');
        }
        out
    }

    pub fn render_csv(&self) -> anyhow::Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        Ok(String::from_utf8(w.into_inner()?)?)
    }
}

/// Prints `listing` as a table or CSV, or `rows` as JSON.
pub fn print<T: Serialize>(format: Format, listing: &Listing, rows: &T) -> anyhow::Result<()> {
    match format {
        Format::Table => print!("{}", listing.render_table()),
        Format::Csv => print!("{}", listing.render_csv()?),
        Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_csv_quotes() {
        let mut l = Listing::new(&["ID", "COST USD", "TEXT"]).right_aligned(&[1]);
        l.row(vec!["a".into(), "1.5000".into(), "x, \"y\"".into()]);
        l.row(vec!["long-id".into(), "12.0000".into(), "z".into()]);
        l.note("2 row(s)");
        assert_eq!(
            l.render_table(),
            "ID       COST USD  TEXT\na          1.5000  x, \"y\"\nlong-id   12.0000  z\n2 row(s)\n"
        );
        assert_eq!(
            l.render_csv().unwrap(),
            "ID,COST USD,TEXT\na,1.5000,\"x, \"\"y\"\"\"\nlong-id,12.0000,z\n"
        );
    }
}
