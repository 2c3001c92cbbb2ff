//! CIFAR-100 in its official binary layout.
//!
//! Each record is 1 byte coarse label, 1 byte fine label, then 3072 pixel bytes: the 32x32 red
//! plane, then green, then blue, each row-major. Decoded images keep exactly that layout, so image
//! `i` is the `[3, 32, 32]` slice `pixels[i * 3072 .. (i + 1) * 3072]`.

use super::{DataError, DataRoot, read_file, read_text};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Folder name under the data root.
pub const DIR: &str = "cifar-100-binary";
/// Pixel bytes per image (3 x 32 x 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes per record: coarse label, fine label, pixels.
pub const RECORD_BYTES: usize = 2 + IMAGE_BYTES;
/// Fine classes.
pub const FINE_CLASSES: usize = 100;
/// Coarse classes (superclasses).
pub const COARSE_CLASSES: usize = 20;

/// One of the two official splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    /// `train.bin`, 50,000 records.
    Train,
    /// `test.bin`, 10,000 records.
    Test,
}

impl std::str::FromStr for SplitName {
    type Err = String;

    /// `train` or `test`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Self::Train),
            "test" => Ok(Self::Test),
            other => Err(format!("unknown split `{other}`; expected train or test")),
        }
    }
}

impl SplitName {
    /// Both splits, train first.
    pub const ALL: [SplitName; 2] = [SplitName::Train, SplitName::Test];

    /// File name in the CIFAR folder.
    pub fn file_name(self) -> &'static str {
        match self {
            SplitName::Train => "train.bin",
            SplitName::Test => "test.bin",
        }
    }

    /// Official record count.
    pub fn records(self) -> usize {
        match self {
            SplitName::Train => crate::config::TRAIN_SIZE,
            SplitName::Test => crate::config::TEST_SIZE,
        }
    }

    /// Official images per fine class.
    pub fn per_class(self) -> usize {
        self.records() / FINE_CLASSES
    }

    /// Known sha256 of the file, as recorded in `cifar-100-binary/SOURCE.txt` of the shared data.
    pub fn known_sha256(self) -> &'static str {
        match self {
            SplitName::Train => "f31298fc616915fa142368359df1c4ca2ae984d6915ca468b998a5ec6aeebf29",
            SplitName::Test => "d8b1e6b7b3bee4020055f0699b111f60b1af1e262aeb93a0b659061746f8224a",
        }
    }

    /// `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Test => "test",
        }
    }
}

impl std::fmt::Display for SplitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded split: images `[N, 3, 32, 32]` as u8, fine and coarse labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// Which split.
    pub name: SplitName,
    /// `N * 3072` pixel bytes, record order.
    pub pixels: Vec<u8>,
    /// Fine label of each image, `0..100`.
    pub fine: Vec<u8>,
    /// Coarse label of each image, `0..20`.
    pub coarse: Vec<u8>,
    /// sha256 of the file as read, hex.
    pub sha256: String,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.fine.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.fine.is_empty()
    }

    /// The `[3, 32, 32]` pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Images per fine class.
    pub fn fine_counts(&self) -> [usize; FINE_CLASSES] {
        let mut counts = [0; FINE_CLASSES];
        for &f in &self.fine {
            counts[f as usize] += 1;
        }
        counts
    }

    /// Images per coarse class.
    pub fn coarse_counts(&self) -> [usize; COARSE_CLASSES] {
        let mut counts = [0; COARSE_CLASSES];
        for &c in &self.coarse {
            counts[c as usize] += 1;
        }
        counts
    }

    /// True when the sha256 equals the known value for this split.
    pub fn checksum_matches(&self) -> bool {
        self.sha256 == self.name.known_sha256()
    }

    /// Keeps only the first `n` records (quick runs on a prefix of the official order).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.pixels.truncate(n * IMAGE_BYTES);
        self.fine.truncate(n);
        self.coarse.truncate(n);
    }
}

/// Class names and the fine-to-coarse map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelNames {
    /// 100 fine names in canonical order.
    pub fine: Vec<String>,
    /// 20 coarse names in canonical order.
    pub coarse: Vec<String>,
    /// Coarse class of each fine class.
    pub fine_to_coarse: Vec<u8>,
}

/// CIFAR-100 as loaded: both splits and the names.
#[derive(Debug, Clone)]
pub struct Cifar100 {
    /// The 50,000 training images.
    pub train: Split,
    /// The 10,000 test images.
    pub test: Split,
    /// Label names.
    pub names: LabelNames,
}

impl Cifar100 {
    /// Loads both splits and the names from `root`, checking record counts, label ranges and
    /// that every record's coarse label agrees with its fine label. With `verify` the sha256 of
    /// each file must equal the known value.
    pub fn load(root: &DataRoot, verify: bool) -> Result<Self, DataError> {
        let dir = root.cifar_dir();
        let names = load_names(&dir)?;
        let train = load_split(&dir, SplitName::Train, &names, verify)?;
        let test = load_split(&dir, SplitName::Test, &names, verify)?;
        Ok(Self { train, test, names })
    }

    /// The split called `name`.
    pub fn split(&self, name: SplitName) -> &Split {
        match name {
            SplitName::Train => &self.train,
            SplitName::Test => &self.test,
        }
    }
}

/// Loads one split file from the CIFAR folder `dir`.
pub fn load_split(
    dir: &Path,
    name: SplitName,
    names: &LabelNames,
    verify: bool,
) -> Result<Split, DataError> {
    let path = dir.join(name.file_name());
    let bytes = read_file(&path)?;
    let sha256 = crate::store::hex(&Sha256::digest(&bytes));
    // Decode first: a truncated file or a bad label gets its precise message, not just "sha256
    // differs".
    let split = decode(&path, name, &bytes, names, sha256)?;
    if verify && !split.checksum_matches() {
        return Err(DataError::invalid(
            &path,
            format!(
                "sha256 {} does not match the known value {} (corrupt or a different copy; \
                 set data.verify_checksums: false to use it anyway)",
                split.sha256,
                name.known_sha256()
            ),
        ));
    }
    Ok(split)
}

/// Decodes the records of a split file already in memory.
pub fn decode(
    path: &Path,
    name: SplitName,
    bytes: &[u8],
    names: &LabelNames,
    sha256: String,
) -> Result<Split, DataError> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::invalid(
            path,
            format!(
                "size {} bytes is not a multiple of the {RECORD_BYTES}-byte record (truncated or not \
                 a CIFAR-100 binary file); expected {} bytes",
                bytes.len(),
                name.records() * RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    if n != name.records() {
        return Err(DataError::invalid(
            path,
            format!(
                "holds {n} records, expected {} for the {name} split",
                name.records()
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(n * IMAGE_BYTES);
    let mut fine = Vec::with_capacity(n);
    let mut coarse = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let (c, f) = (rec[0], rec[1]);
        if f as usize >= FINE_CLASSES || c as usize >= COARSE_CLASSES {
            return Err(DataError::invalid(
                path,
                format!(
                    "record {i} (byte offset {}): label out of range: coarse {c} (expected 0..20), \
                     fine {f} (expected 0..100)",
                    i * RECORD_BYTES
                ),
            ));
        }
        let expected = names.fine_to_coarse[f as usize];
        if c != expected {
            return Err(DataError::invalid(
                path,
                format!(
                    "record {i}: coarse label {c} disagrees with fine label {f} ({}), whose coarse \
                     class is {expected}",
                    names.fine[f as usize]
                ),
            ));
        }
        coarse.push(c);
        fine.push(f);
        pixels.extend_from_slice(&rec[2..]);
    }
    Ok(Split {
        name,
        pixels,
        fine,
        coarse,
        sha256,
    })
}

/// Loads `fine_label_names.txt`, `coarse_label_names.txt` and `fine_to_coarse.csv` from `dir`.
pub fn load_names(dir: &Path) -> Result<LabelNames, DataError> {
    let fine = read_list(&dir.join("fine_label_names.txt"), FINE_CLASSES)?;
    let coarse = read_list(&dir.join("coarse_label_names.txt"), COARSE_CLASSES)?;
    let map_path = dir.join("fine_to_coarse.csv");
    let text = read_text(&map_path)?;
    let mut fine_to_coarse = vec![u8::MAX; FINE_CLASSES];
    for (lineno, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| {
            DataError::invalid(
                &map_path,
                format!(
                    "line {}: {what}; expected `fine_label,fine_name,coarse_label,coarse_name`",
                    lineno + 1
                ),
            )
        };
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != 4 {
            return Err(bad(&format!("{} columns", cols.len())));
        }
        let f: usize = cols[0]
            .parse()
            .map_err(|_| bad("fine_label is not a number"))?;
        let c: usize = cols[2]
            .parse()
            .map_err(|_| bad("coarse_label is not a number"))?;
        if f >= FINE_CLASSES || c >= COARSE_CLASSES {
            return Err(bad("label out of range"));
        }
        if cols[1] != fine[f] || cols[3] != coarse[c] {
            return Err(bad(&format!(
                "names `{}`/`{}` disagree with the label name files (`{}`/`{}`)",
                cols[1], cols[3], fine[f], coarse[c]
            )));
        }
        fine_to_coarse[f] = c as u8;
    }
    if let Some(f) = fine_to_coarse.iter().position(|&c| c == u8::MAX) {
        return Err(DataError::invalid(
            &map_path,
            format!("fine class {f} ({}) has no coarse class", fine[f]),
        ));
    }
    Ok(LabelNames {
        fine,
        coarse,
        fine_to_coarse,
    })
}

fn read_list(path: &Path, expected: usize) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = read_text(path)?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if names.len() != expected {
        return Err(DataError::invalid(
            path,
            format!("{} names, expected {expected}", names.len()),
        ));
    }
    Ok(names)
}

/// Paths of the files the loader reads, for messages.
pub fn files(root: &DataRoot) -> Vec<PathBuf> {
    let dir = root.cifar_dir();
    [
        "train.bin",
        "test.bin",
        "fine_label_names.txt",
        "coarse_label_names.txt",
        "fine_to_coarse.csv",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // hand-made input for a pure-function unit test: two classes' names padded to 100/20.
    fn names() -> LabelNames {
        LabelNames {
            fine: (0..100).map(|i| format!("f{i}")).collect(),
            coarse: (0..20).map(|i| format!("c{i}")).collect(),
            fine_to_coarse: (0..100).map(|i| (i / 5) as u8).collect(),
        }
    }

    fn records(labels: &[(u8, u8)]) -> Vec<u8> {
        labels
            .iter()
            .flat_map(|&(c, f)| {
                let mut r = vec![c, f];
                r.extend(std::iter::repeat_n(7u8, IMAGE_BYTES));
                r
            })
            .collect()
    }

    #[test]
    fn truncated_file_is_rejected_with_its_size() {
        let mut bytes = records(&[(0, 0); 3]);
        bytes.pop();
        let err = decode(
            Path::new("test.bin"),
            SplitName::Test,
            &bytes,
            &names(),
            String::new(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("test.bin") && msg.contains("not a multiple of the 3074-byte record"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_record_count_is_rejected() {
        let bytes = records(&[(0, 0); 3]);
        let err = decode(
            Path::new("test.bin"),
            SplitName::Test,
            &bytes,
            &names(),
            String::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("holds 3 records, expected 10000"),
            "{err}"
        );
    }
}
