//! Rankings made elsewhere, scored under the harness's definitions: `harness evaluate` reads a
//! CSV or Parquet file with the columns `query_id, rank, db_id` (query ids index the CIFAR-100
//! test split, database ids the split the rankings searched; within a query the rows are
//! ordered by `rank`, whatever its base), so any system's outputs, the report's own included,
//! get every metric of `metrics.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a rankings file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RankingsError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The Parquet reader failed.
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: polars::error::PolarsError,
    },
    /// The content is not what the format asks for.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where and what: line, column, expected value.
        message: String,
    },
}

/// Per query (ascending query id), its database ids in rank order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rankings {
    /// Query ids (test-split indices), ascending.
    pub queries: Vec<u32>,
    /// `lists[i]`: the ranking of `queries[i]`, best first.
    pub lists: Vec<Vec<u32>>,
}

impl Rankings {
    /// Reads `path` (`.csv`, or `.parquet`/`.pq`) and orders each query's rows by rank; a
    /// query with two rows of the same rank is refused.
    pub fn read(path: &Path) -> Result<Self, RankingsError> {
        let format = |message: String| RankingsError::Format {
            path: path.to_path_buf(),
            message,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let rows = match ext.as_str() {
            "csv" => csv_rows(path)?,
            "parquet" | "pq" => parquet_rows(path)?,
            _ => {
                return Err(format(
                    "expected a .csv or .parquet file with the columns query_id, rank, db_id"
                        .into(),
                ));
            }
        };
        if rows.is_empty() {
            return Err(format("no rankings: the file has no rows".into()));
        }
        let mut by_query: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
        for (q, rank, db) in rows {
            by_query.entry(q).or_default().push((rank, db));
        }
        let mut out = Self::default();
        for (q, mut list) in by_query {
            list.sort_by_key(|e| e.0);
            if let Some(w) = list.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(format(format!(
                    "query {q} has two rows with rank {} (db ids {} and {})",
                    w[0].0, w[0].1, w[1].1
                )));
            }
            out.queries.push(q);
            out.lists.push(list.into_iter().map(|e| e.1).collect());
        }
        Ok(out)
    }
}

/// `(query_id, rank, db_id)` rows of a CSV file with a header naming those columns (in any
/// order; other columns, such as a score, are ignored).
fn csv_rows(path: &Path) -> Result<Vec<(u32, i64, u32)>, RankingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RankingsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |message: String| RankingsError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            format(format!(
                "line 1: the header `{}` has no column `{name}` (expected query_id, rank, db_id)",
                header.join(",")
            ))
        })
    };
    let (cq, cr, cd) = (column("query_id")?, column("rank")?, column("db_id")?);
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize, name: &str| -> Result<i64, RankingsError> {
            let v = fields.get(c).copied().unwrap_or_default();
            v.parse::<i64>().map_err(|_| {
                format(format!(
                    "line {}: {name} `{v}` is not a whole number",
                    i + 1
                ))
            })
        };
        let id = |c: usize, name: &str| -> Result<u32, RankingsError> {
            let v = field(c, name)?;
            u32::try_from(v)
                .map_err(|_| format(format!("line {}: {name} {v} is not an id >= 0", i + 1)))
        };
        rows.push((id(cq, "query_id")?, field(cr, "rank")?, id(cd, "db_id")?));
    }
    Ok(rows)
}

/// The same rows from a Parquet file (integer columns of any width).
fn parquet_rows(path: &Path) -> Result<Vec<(u32, i64, u32)>, RankingsError> {
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let file = std::fs::File::open(path).map_err(|source| RankingsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parquet = |source| RankingsError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let df = ParquetReader::new(file).finish().map_err(parquet)?;
    let column = |name: &str| -> Result<Vec<Option<i64>>, RankingsError> {
        let c = df.column(name).map_err(|_| RankingsError::Format {
            path: path.to_path_buf(),
            message: format!(
                "no column `{name}` (expected query_id, rank, db_id; found {:?})",
                df.get_column_names()
            ),
        })?;
        let c = c.cast(&DataType::Int64).map_err(parquet)?;
        let a = c.i64().map_err(parquet)?;
        Ok((0..a.len()).map(|i| a.get(i)).collect())
    };
    let (q, r, d) = (column("query_id")?, column("rank")?, column("db_id")?);
    q.into_iter()
        .zip(r)
        .zip(d)
        .enumerate()
        .map(|(i, ((q, r), d))| {
            let bad = || RankingsError::Format {
                path: path.to_path_buf(),
                message: format!("row {}: a missing or negative value", i + 1),
            };
            let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).ok_or_else(bad);
            Ok((id(q)?, r.ok_or_else(bad)?, id(d)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_ordered_by_rank_and_bad_rows_named() {
        // hand-made files for a unit test of the reader
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.csv");
        std::fs::write(
            &path,
            "db_id,query_id,rank,score\n7,3,2,0.1\n5,3,1,0.2\n9,0,0,1\n",
        )
        .unwrap();
        let r = Rankings::read(&path).unwrap();
        assert_eq!(r.queries, [0, 3]);
        assert_eq!(r.lists, [vec![9], vec![5, 7]]);

        std::fs::write(&path, "query_id,rank,db_id\n0,1,4\n0,x,5\n").unwrap();
        let e = Rankings::read(&path).unwrap_err().to_string();
        assert!(e.contains("line 3: rank `x` is not a whole number"), "{e}");
        std::fs::write(&path, "query_id,rank,db_id\n0,1,4\n0,1,5\n").unwrap();
        let e = Rankings::read(&path).unwrap_err().to_string();
        assert!(e.contains("query 0 has two rows with rank 1"), "{e}");
        std::fs::write(&path, "query,rank,db_id\n0,1,4\n").unwrap();
        let e = Rankings::read(&path).unwrap_err().to_string();
        assert!(e.contains("no column `query_id`"), "{e}");
        let e = Rankings::read(&tmp.path().join("r.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a .csv or .parquet file"), "{e}");
    }
}
