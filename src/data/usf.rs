//! The University of South Florida Free Association Norms (Nelson, McEvoy & Schreiber, 1998).
//!
//! One CSV row per cue-target pair, 31 columns with a header. We keep the cue, the target, the
//! `NORMED?` flag and the forward (`FSG`) and backward (`BSG`) strengths. Words are lower-cased;
//! `?` marks a missing value.

use super::{DataError, read_text};
use std::path::Path;

/// Columns the loader needs; any file without them is rejected.
pub const REQUIRED_COLUMNS: [&str; 5] = ["CUE", "TARGET", "NORMED?", "FSG", "BSG"];

/// One cue-target association.
#[derive(Debug, Clone, PartialEq)]
pub struct Association {
    /// Cue word, lower case.
    pub cue: String,
    /// Response word, lower case.
    pub target: String,
    /// Whether the target was itself normed as a cue.
    pub normed: bool,
    /// Forward strength: share of participants who answered `target` to `cue`.
    pub fsg: Option<f32>,
    /// Backward strength: share who answered `cue` to `target` (missing when not normed).
    pub bsg: Option<f32>,
}

/// The whole norms table.
#[derive(Debug, Clone, PartialEq)]
pub struct UsfNorms {
    /// Rows in file order.
    pub rows: Vec<Association>,
}

impl UsfNorms {
    /// Loads and validates the CSV at `path`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        Self::parse(path, &read_text(path)?)
    }

    /// Parses CSV text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, DataError> {
        let mut lines = text.lines().enumerate();
        let header: Vec<&str> = match lines.next() {
            Some((_, h)) => h.split(',').map(str::trim).collect(),
            None => {
                return Err(DataError::invalid(
                    path,
                    "empty file; expected a header line",
                ));
            }
        };
        let col = |name: &str| {
            header.iter().position(|h| *h == name).ok_or_else(|| {
                DataError::invalid(
                    path,
                    format!(
                        "missing column `{name}`; the header has {} columns ({}), and {} are required",
                        header.len(),
                        header.join(","),
                        REQUIRED_COLUMNS.join(", ")
                    ),
                )
            })
        };
        let [cue, target, normed, fsg, bsg] = REQUIRED_COLUMNS.map(col);
        let (cue, target, normed, fsg, bsg) = (cue?, target?, normed?, fsg?, bsg?);
        let mut rows = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let lineno = i + 1;
            if fields.len() != header.len() {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "line {lineno}: {} fields, expected {} as in the header",
                        fields.len(),
                        header.len()
                    ),
                ));
            }
            let strength = |idx: usize, name: &str| -> Result<Option<f32>, DataError> {
                let v = fields[idx];
                if v == "?" || v.is_empty() {
                    return Ok(None);
                }
                match v.parse::<f32>() {
                    Ok(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(Some(x)),
                    _ => Err(DataError::invalid(
                        path,
                        format!(
                            "line {lineno} ({} -> {}): {name} `{v}` is not a strength in [0, 1] or `?`",
                            fields[cue], fields[target]
                        ),
                    )),
                }
            };
            rows.push(Association {
                cue: fields[cue].to_lowercase(),
                target: fields[target].to_lowercase(),
                normed: fields[normed].eq_ignore_ascii_case("yes"),
                fsg: strength(fsg, "FSG")?,
                bsg: strength(bsg, "BSG")?,
            });
        }
        Ok(Self { rows })
    }

    /// The association `cue -> target`, if present (words compared in lower case).
    pub fn get(&self, cue: &str, target: &str) -> Option<&Association> {
        let (cue, target) = (cue.to_lowercase(), target.to_lowercase());
        self.rows
            .iter()
            .find(|a| a.cue == cue && a.target == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // hand-made input for a pure-function unit test
    const HEAD: &str = "CUE,TARGET,NORMED?,#G,FSG,BSG\n";

    #[test]
    fn parses_and_lowercases() {
        let text = format!("{HEAD}DOG,CAT,YES,156,.667,.513\nA,B,NO,152,.454,?\n");
        let n = UsfNorms::parse(Path::new("u.csv"), &text).unwrap();
        assert_eq!(n.rows.len(), 2);
        let dc = n.get("dog", "CAT").unwrap();
        assert_eq!(
            (dc.fsg, dc.bsg, dc.normed),
            (Some(0.667), Some(0.513), true)
        );
        assert_eq!(n.rows[1].bsg, None);
    }

    #[test]
    fn missing_column_is_named() {
        let err =
            UsfNorms::parse(Path::new("u.csv"), "CUE,TARGET,NORMED?,BSG\nA,B,NO,?\n").unwrap_err();
        assert!(err.to_string().contains("missing column `FSG`"), "{err}");
    }

    #[test]
    fn non_numeric_strength_names_the_line() {
        let text = format!("{HEAD}DOG,CAT,YES,156,.667,.513\nA,B,NO,152,lots,?\n");
        let err = UsfNorms::parse(Path::new("u.csv"), &text).unwrap_err();
        assert!(
            err.to_string().contains("line 3 (A -> B): FSG `lots`"),
            "{err}"
        );
    }

    #[test]
    fn ragged_row_is_rejected() {
        let text = format!("{HEAD}DOG,CAT,YES\n");
        let err = UsfNorms::parse(Path::new("u.csv"), &text).unwrap_err();
        assert!(
            err.to_string().contains("line 2: 3 fields, expected 6"),
            "{err}"
        );
    }
}
