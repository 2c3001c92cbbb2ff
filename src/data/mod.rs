//! The real data: CIFAR-100, its WordNet hierarchy and the USF Free Association Norms.
//!
//! Nothing here is synthetic. Files are read at run time from a data root laid out like
//! `../shared/data` (see [`DataRoot::resolve`] for the search order); each loader validates what it
//! reads and names the file and the record or line in its errors.

pub mod cifar;
pub mod fetch;
pub mod hierarchy;
pub mod imagenet;
pub mod summary;
pub mod usf;

use std::path::{Path, PathBuf};

/// Environment variable that points at the data root.
pub const DATA_ENV: &str = "HARNESS_DATA";

/// Why data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No data root was found.
    #[error(
        "no data root found; looked in:\n{}\nfix: pass --data-root DIR, set {DATA_ENV}=DIR, set `data.root` in the config, \
         or fetch every data file from its public source with `harness data fetch --all --root DIR` and pass --data-root DIR",
        .searched.iter().map(|p| format!("  - {}", p.display())).collect::<Vec<_>>().join("\n")
    )]
    RootNotFound {
        /// Every place that was tried, in order.
        searched: Vec<PathBuf>,
    },
    /// An explicitly given root does not exist.
    #[error("data root {path} ({source_of}) does not exist or is not a folder")]
    RootMissing {
        /// The root that was given.
        path: PathBuf,
        /// Where it came from (`--data-root`, `HARNESS_DATA`, `data.root`).
        source_of: String,
    },
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file was read but its content is wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the record, line or field.
        message: String,
    },
    /// The root lacks files that a run reads.
    #[error(
        "data root {root} ({chosen_by}) lacks what a run reads:\n{}\nfetch them (each verified by sha256) with:\n  harness data fetch --all --root {root}",
        .missing.iter().map(|(s, paths)| format!("  - {}, {}: {}", s.name, s.what, paths.join(", "))).collect::<Vec<_>>().join("\n")
    )]
    Incomplete {
        /// The root.
        root: PathBuf,
        /// How it was chosen.
        chosen_by: String,
        /// Each source with missing files, and their paths under the root.
        missing: Vec<(&'static fetch::Source, Vec<&'static str>)>,
    },
    /// A download or archive problem.
    #[error("{0}")]
    Fetch(String),
}

impl DataError {
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A folder holding the data sets, laid out like `../shared/data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    /// The folder.
    pub path: PathBuf,
    /// How it was chosen, for messages and the manifest.
    pub chosen_by: String,
}

impl DataRoot {
    /// Picks the data root. Order: `cli` (`--data-root`), then `$HARNESS_DATA`, then `config`
    /// (`data.root`), then the first of `./../shared/data`, `./shared/data` and the checkout's
    /// `../shared/data` that holds a `cifar-100-binary` folder.
    pub fn resolve(cli: Option<&Path>, config: Option<&Path>) -> Result<Self, DataError> {
        let env = std::env::var_os(DATA_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let searched = [
            PathBuf::from("../shared/data"),
            PathBuf::from("shared/data"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
        ];
        Self::resolve_from(cli, env.as_deref(), config, &searched)
    }

    /// [`DataRoot::resolve`] with the environment value and the search list given explicitly.
    pub fn resolve_from(
        cli: Option<&Path>,
        env: Option<&Path>,
        config: Option<&Path>,
        search: &[PathBuf],
    ) -> Result<Self, DataError> {
        let explicit = [
            (cli, "--data-root"),
            (env, DATA_ENV),
            (config, "data.root in the config"),
        ];
        if let Some((path, by)) = explicit.into_iter().find_map(|(p, by)| p.map(|p| (p, by))) {
            if !path.is_dir() {
                return Err(DataError::RootMissing {
                    path: path.to_path_buf(),
                    source_of: by.to_string(),
                });
            }
            return Ok(Self {
                path: path.to_path_buf(),
                chosen_by: by.to_string(),
            });
        }
        match search.iter().find(|p| p.join(cifar::DIR).is_dir()) {
            Some(p) => Ok(Self {
                path: p.clone(),
                chosen_by: format!("found at {}", p.display()),
            }),
            None => Err(DataError::RootNotFound {
                searched: search.to_vec(),
            }),
        }
    }

    /// A root at an explicit path (tests and tools).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            chosen_by: "explicit".into(),
        }
    }

    /// Fails with every missing file and the command that fetches them, if the root lacks a file
    /// that `harness run` reads.
    pub fn require_for_run(&self) -> Result<(), DataError> {
        let missing = fetch::missing_for_run(&self.path);
        if missing.is_empty() {
            return Ok(());
        }
        Err(DataError::Incomplete {
            root: self.path.clone(),
            chosen_by: self.chosen_by.clone(),
            missing,
        })
    }

    /// `cifar-100-binary/` under the root.
    pub fn cifar_dir(&self) -> PathBuf {
        self.path.join(cifar::DIR)
    }

    /// `hierarchy/` under the root.
    pub fn hierarchy_dir(&self) -> PathBuf {
        self.path.join("hierarchy")
    }

    /// The USF norms CSV under the root.
    pub fn usf_file(&self) -> PathBuf {
        self.path.join("usf/usf_free_association_norms.csv")
    }
}

/// Reads a file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Reads a UTF-8 text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes).map_err(|e| DataError::invalid(path, format!("not UTF-8 text: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_roots_win_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let r = DataRoot::resolve_from(Some(p), Some(Path::new("/nope")), None, &[]).unwrap();
        assert_eq!(r.chosen_by, "--data-root");
        let r = DataRoot::resolve_from(None, Some(p), Some(Path::new("/nope")), &[]).unwrap();
        assert_eq!(r.chosen_by, DATA_ENV);
        let err = DataRoot::resolve_from(None, None, Some(Path::new("/nope")), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nope (data.root in the config) does not exist"),
            "{err}"
        );
    }

    #[test]
    fn nothing_found_lists_the_search_and_the_fixes() {
        let search = [PathBuf::from("/no/such/a"), PathBuf::from("/no/such/b")];
        let err = DataRoot::resolve_from(None, None, None, &search)
            .unwrap_err()
            .to_string();
        assert!(err.contains("  - /no/such/a\n  - /no/such/b"), "{err}");
        assert!(
            err.contains("--data-root")
                && err.contains(DATA_ENV)
                && err.contains("harness data fetch"),
            "{err}"
        );
    }
}
