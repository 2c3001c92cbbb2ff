//! The official CIFAR-100 binary archive, unpacked into the files the harness reads.

use crate::data::{DataError, cifar};
use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Where the official archive is published.
pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// md5 of the official archive, as published with it.
pub const OFFICIAL_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";
/// Archive members that are installed.
pub const MEMBERS: [&str; 4] = [
    "train.bin",
    "test.bin",
    "fine_label_names.txt",
    "coarse_label_names.txt",
];

/// md5 of a file, hex.
pub fn md5_file(path: &Path) -> Result<String, DataError> {
    super::file_digest::<md5::Md5>(path)
}

/// Extracts the CIFAR-100 members of `archive` into `staging` and checks them: the label-name
/// lists rewritten one name per line (whatever blank lines the archive has), `fine_to_coarse.csv`
/// derived from the records, and both splits decoded. Only the expected members are extracted,
/// so an archive cannot write outside `staging`.
pub(super) fn extract_and_check(archive: &Path, staging: &Path) -> Result<(), DataError> {
    fs::create_dir_all(staging).map_err(|e| DataError::io(staging, e))?;
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let corrupt =
        |e: io::Error| DataError::invalid(archive, format!("not a readable .tar.gz: {e}"));
    let mut found = Vec::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let mut parts = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let (Some(dir), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if dir != cifar::DIR || !MEMBERS.contains(&name.as_str()) || found.contains(&name) {
            continue;
        }
        let out_path = staging.join(&name);
        let mut out = File::create(&out_path).map_err(|e| DataError::io(&out_path, e))?;
        io::copy(&mut entry, &mut out).map_err(corrupt)?;
        out.sync_all().map_err(|e| DataError::io(&out_path, e))?;
        found.push(name);
    }
    if let Some(missing) = MEMBERS.iter().find(|m| !found.iter().any(|f| f == *m)) {
        return Err(DataError::invalid(
            archive,
            format!("member {}/{missing} is missing", cifar::DIR),
        ));
    }
    for list in ["fine_label_names.txt", "coarse_label_names.txt"] {
        let path = staging.join(list);
        let names: String = crate::data::read_text(&path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, names).map_err(|e| DataError::io(&path, e))?;
    }
    write_fine_to_coarse(staging)?;
    // Decode both splits to prove the installation is usable.
    let names = cifar::load_names(staging)?;
    for split in cifar::SplitName::ALL {
        cifar::load_split(staging, split, &names, false)?;
    }
    Ok(())
}

/// Derives `fine_to_coarse.csv` from the records of `train.bin` (the official archive does not
/// ship it): every fine label must always come with the same coarse label.
fn write_fine_to_coarse(dir: &Path) -> Result<(), DataError> {
    let read_names = |f: &str| -> Result<Vec<String>, DataError> {
        let p = dir.join(f);
        Ok(crate::data::read_text(&p)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    };
    let fine = read_names("fine_label_names.txt")?;
    let coarse = read_names("coarse_label_names.txt")?;
    let train = dir.join("train.bin");
    let bytes = crate::data::read_file(&train)?;
    let mut map: Vec<Option<u8>> = vec![None; fine.len()];
    for (i, rec) in bytes.chunks_exact(cifar::RECORD_BYTES).enumerate() {
        let (c, f) = (rec[0], rec[1] as usize);
        if f >= fine.len() || c as usize >= coarse.len() {
            return Err(DataError::invalid(
                &train,
                format!("record {i}: label out of range (coarse {c}, fine {f})"),
            ));
        }
        match map[f] {
            Some(old) if old != c => {
                return Err(DataError::invalid(
                    &train,
                    format!("record {i}: fine class {f} appears with coarse classes {old} and {c}"),
                ));
            }
            _ => map[f] = Some(c),
        }
    }
    let mut csv = String::from("fine_label,fine_name,coarse_label,coarse_name\n");
    for (f, c) in map.iter().enumerate() {
        let c =
            c.ok_or_else(|| DataError::invalid(&train, format!("fine class {f} never occurs")))?;
        csv.push_str(&format!("{f},{},{c},{}\n", fine[f], coarse[c as usize]));
    }
    let path = dir.join("fine_to_coarse.csv");
    fs::write(&path, csv).map_err(|e| DataError::io(&path, e))
}
