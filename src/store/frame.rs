//! A table as typed columns, written as CSV and Parquet through polars and as Markdown.
//!
//! polars stays at this edge: the rest of the harness builds [`Frame`]s from plain values, and
//! only [`Frame::write`] turns them into a `DataFrame`. Every file is written atomically.

use super::{self as store, StoreError};
use polars::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Table file formats.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Comma-separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// GitHub-flavoured Markdown.
    Markdown,
}

/// One column's values; `None` is a null (an empty CSV field, `—` in Markdown).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Text.
    Str(Vec<String>),
    /// Floating point.
    F64(Vec<Option<f64>>),
    /// Unsigned integers.
    U32(Vec<Option<u32>>),
    /// Single-precision floats.
    F32(Vec<f32>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Str(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::U32(v) => v.len(),
            Values::F32(v) => v.len(),
        }
    }

    fn markdown_cell(&self, row: usize, digits: usize) -> String {
        let dash = || "—".to_string();
        match self {
            Values::Str(v) => v[row].replace('|', "\\|"),
            Values::F64(v) => v[row].map(|x| format!("{x:.digits$}")).unwrap_or_else(dash),
            Values::U32(v) => v[row].map(|x| x.to_string()).unwrap_or_else(dash),
            Values::F32(v) => format!("{:.digits$}", v[row]),
        }
    }

    fn numeric(&self) -> bool {
        !matches!(self, Values::Str(_))
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    columns: Vec<(String, Values)>,
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a column; panics when its length differs from the others' (a programming error).
    pub fn with(mut self, name: &str, values: Values) -> Self {
        if let Some((_, first)) = self.columns.first() {
            assert_eq!(
                first.len(),
                values.len(),
                "column {name} has a different length"
            );
        }
        self.columns.push((name.to_string(), values));
        self
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.columns.first().map_or(0, |c| c.1.len())
    }

    /// The column names.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.0.as_str()).collect()
    }

    fn to_polars(&self) -> PolarsResult<DataFrame> {
        let columns: Vec<Column> = self
            .columns
            .iter()
            .map(|(name, v)| {
                let name = PlSmallStr::from_str(name);
                match v {
                    Values::Str(x) => Column::new(name, x),
                    Values::F64(x) => Column::new(name, x),
                    Values::U32(x) => Column::new(name, x),
                    Values::F32(x) => Column::new(name, x),
                }
            })
            .collect();
        DataFrame::new_infer_height(columns)
    }

    /// A GitHub-flavoured Markdown table, floats with `digits` decimals.
    pub fn markdown(&self, digits: usize) -> String {
        let mut out = String::from("|");
        for (name, _) in &self.columns {
            let _ = write!(out, " {name} |");
        }
        out.push_str("\n|");
        for (_, v) in &self.columns {
            out.push_str(if v.numeric() { "---:|" } else { "---|" });
        }
        out.push('\n');
        for row in 0..self.height() {
            out.push('|');
            for (_, v) in &self.columns {
                let _ = write!(out, " {} |", v.markdown_cell(row, digits));
            }
            out.push('\n');
        }
        out
    }

    /// Writes `<dir>/<stem>.csv` and `<stem>.parquet` as `formats` ask (Markdown is the caller's,
    /// since it usually carries a heading and notes); returns the paths written.
    pub fn write(
        &self,
        dir: &Path,
        stem: &str,
        formats: &[TableFormat],
    ) -> Result<Vec<PathBuf>, StoreError> {
        let mut df = self.to_polars().map_err(|e| StoreError::Write {
            path: dir.join(stem),
            source: std::io::Error::other(e),
        })?;
        let mut written = Vec::new();
        for format in formats {
            let path = match format {
                TableFormat::Csv => dir.join(format!("{stem}.csv")),
                TableFormat::Parquet => dir.join(format!("{stem}.parquet")),
                TableFormat::Markdown => continue,
            };
            store::write_atomic(&path, |w| {
                let result = match format {
                    TableFormat::Csv => CsvWriter::new(w).finish(&mut df),
                    _ => ParquetWriter::new(w).finish(&mut df).map(|_| ()),
                };
                result.map_err(std::io::Error::other)
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parquet_and_markdown_agree() {
        // hand-made values for a unit test of the writers
        let f = Frame::new()
            .with("method", Values::Str(vec!["exact".into(), "iwan".into()]))
            .with("k", Values::U32(vec![Some(5), None]))
            .with("value", Values::F64(vec![Some(0.5), None]));
        let dir = tempfile::tempdir().unwrap();
        let paths = f
            .write(dir.path(), "t", &[TableFormat::Csv, TableFormat::Parquet])
            .unwrap();
        assert_eq!(paths.len(), 2);
        let csv = std::fs::read_to_string(&paths[0]).unwrap();
        assert_eq!(csv, "method,k,value\nexact,5,0.5\niwan,,\n");
        let file = std::fs::File::open(&paths[1]).unwrap();
        let back = ParquetReader::new(file).finish().unwrap();
        assert_eq!(back.shape(), (2, 3));
        assert_eq!(
            back.column("value").unwrap().f64().unwrap().get(0),
            Some(0.5)
        );
        assert_eq!(
            f.markdown(2),
            "| method | k | value |\n|---|---:|---:|\n| exact | 5 | 0.50 |\n| iwan | — | — |\n"
        );
    }
}
