//! Size and CRC-32 of every file a stage wrote, so that a reused artifact is verified rather
//! than trusted: a truncated, overwritten or deleted file is found before anything reads it.
//!
//! Files are listed recursively under the given paths (relative to one root), sorted, and
//! hidden names (`.lock`, `.<name>.<pid>.tmp`) are skipped. CRC-32 (`crc32fast`, SIMD
//! accelerated) detects any burst error up to 32 bits and random damage with probability
//! 1 - 2^-32; it is a check against accidents, not against an adversary.

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file's path (relative to the stage root, `/`-separated), size and CRC-32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Relative path.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the contents.
    pub crc32: u32,
}

/// Why a stored file no longer matches its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The file is gone.
    #[error("{path}: missing (recorded {bytes} bytes)")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Its recorded size.
        bytes: u64,
    },
    /// The size changed (truncated or appended).
    #[error("{path}: {found} bytes, recorded {bytes}")]
    Size {
        /// The file.
        path: PathBuf,
        /// Recorded size.
        bytes: u64,
        /// Size now.
        found: u64,
    },
    /// Same size, other contents.
    #[error("{path}: contents changed (CRC-32 {found:08x}, recorded {crc32:08x})")]
    Contents {
        /// The file.
        path: PathBuf,
        /// Recorded CRC-32.
        crc32: u32,
        /// CRC-32 now.
        found: u32,
    },
}

/// Sums every file under `root.join(p)` for each `p` in `paths` (a file or a folder; a path
/// that does not exist contributes nothing), sorted by path.
pub fn sum_paths(root: &Path, paths: &[&str]) -> Result<Vec<FileSum>, StoreError> {
    let mut files = Vec::new();
    for p in paths {
        collect(&root.join(p), &mut files)?;
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|path| {
            let (bytes, crc32) = crc_of(&path)?;
            Ok(FileSum {
                path: relative(root, &path),
                bytes,
                crc32,
            })
        })
        .collect()
}

/// Checks every recorded file under `root`; the first mismatch, in record order.
pub fn verify(root: &Path, files: &[FileSum]) -> Result<(), Mismatch> {
    for f in files {
        let path = root.join(&f.path);
        let found = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => {
                return Err(Mismatch::Missing {
                    path,
                    bytes: f.bytes,
                });
            }
        };
        if found != f.bytes {
            return Err(Mismatch::Size {
                path,
                bytes: f.bytes,
                found,
            });
        }
        let crc = crc_of(&path).map(|c| c.1).map_err(|_| Mismatch::Missing {
            path: path.clone(),
            bytes: f.bytes,
        })?;
        if crc != f.crc32 {
            return Err(Mismatch::Contents {
                path,
                crc32: f.crc32,
                found: crc,
            });
        }
    }
    Ok(())
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    let read_err = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        collect(&entry.path(), out)?;
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Size and CRC-32 of the file at `path`, read in 1 MiB pieces.
fn crc_of(path: &Path) -> Result<(u64, u32), StoreError> {
    let err = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made files (unit test of the checker only).
    fn folder() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("embed/codes")).unwrap();
        std::fs::write(tmp.path().join("embed/codes/test.npy"), vec![7u8; 5000]).unwrap();
        std::fs::write(tmp.path().join("metrics.csv"), b"method,k\n").unwrap();
        std::fs::write(tmp.path().join("embed/.lock"), b"123").unwrap();
        tmp
    }

    #[test]
    fn sums_list_every_file_once_and_skip_hidden_ones() {
        let tmp = folder();
        let sums = sum_paths(tmp.path(), &["embed", "metrics.csv", "absent", "embed"]).unwrap();
        let paths: Vec<&str> = sums.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["embed/codes/test.npy", "metrics.csv"]);
        assert_eq!(sums[0].bytes, 5000);
        // CRC-32 of "method,k\n", computed independently with Python's zlib.crc32.
        assert_eq!(sums[1].crc32, 0xd703_c1b3);
        verify(tmp.path(), &sums).unwrap();
    }

    #[test]
    fn damage_of_every_kind_is_found() {
        let tmp = folder();
        let sums = sum_paths(tmp.path(), &["embed", "metrics.csv"]).unwrap();
        let file = tmp.path().join("embed/codes/test.npy");
        // Overwritten in the middle, same size.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[2500] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(matches!(
            verify(tmp.path(), &sums),
            Err(Mismatch::Contents { .. })
        ));
        // Truncated.
        std::fs::write(&file, &bytes[..4000]).unwrap();
        let err = verify(tmp.path(), &sums).unwrap_err();
        assert!(matches!(err, Mismatch::Size { found: 4000, .. }), "{err}");
        assert!(err.to_string().contains("test.npy"), "{err}");
        // Deleted.
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            verify(tmp.path(), &sums),
            Err(Mismatch::Missing { .. })
        ));
    }
}
