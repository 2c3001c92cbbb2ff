//! `harness data fetch`: download the official CIFAR-100 binary archive, check its md5 and
//! install it under a data root.
//!
//! Installation is all-or-nothing: members are extracted into a hidden staging folder beside the
//! destination, checked (record counts, labels), completed with `fine_to_coarse.csv` derived
//! from the records, and only then renamed to `cifar-100-binary/`. Only the four expected members
//! are extracted, so an archive cannot write outside the staging folder.

use super::{DataError, cifar};
use md5::{Digest, Md5};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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

/// Downloads `url` to a temporary file under `root`, then installs it with [`install_archive`].
/// `on_progress(done, total)` is called as bytes arrive.
pub fn download_and_install(
    url: &str,
    expected_md5: &str,
    root: &Path,
    on_progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf, DataError> {
    fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;
    let part = root.join(format!(
        ".cifar-100-binary.tar.gz.{}.part",
        std::process::id()
    ));
    let result = (|| {
        let response = ureq::get(url)
            .call()
            .map_err(|e| DataError::Fetch(format!("download of {url} failed: {e}")))?;
        let total = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut body = response.into_body().into_reader();
        let mut out = File::create(&part).map_err(|e| DataError::io(&part, e))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        loop {
            let n = body.read(&mut buf).map_err(|e| {
                DataError::Fetch(format!(
                    "download of {url} broke off after {done} bytes: {e}"
                ))
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&part, e))?;
            done += n as u64;
            on_progress(done, total);
        }
        out.sync_all().map_err(|e| DataError::io(&part, e))?;
        install_archive(&part, expected_md5, root)
    })();
    let _ = fs::remove_file(&part);
    result
}

/// md5 of a file, hex.
pub fn md5_file(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::store::hex(&hasher.finalize()))
}

/// Checks the md5 of `archive` and installs its CIFAR-100 members as `root/cifar-100-binary/`.
/// Fails without touching `root/cifar-100-binary` if that folder exists, the md5 differs, a
/// member is missing, or the data does not decode. Returns the installed folder.
pub fn install_archive(
    archive: &Path,
    expected_md5: &str,
    root: &Path,
) -> Result<PathBuf, DataError> {
    let dest = root.join(cifar::DIR);
    if dest.exists() {
        return Err(DataError::Fetch(format!(
            "{} already exists; remove it first to reinstall",
            dest.display()
        )));
    }
    let md5 = md5_file(archive)?;
    if md5 != expected_md5 {
        return Err(DataError::invalid(
            archive,
            format!(
                "md5 {md5} does not match the expected {expected_md5}: the download is corrupt or not the official archive"
            ),
        ));
    }
    let staging = root.join(format!(".{}.staging-{}", cifar::DIR, std::process::id()));
    let result = extract_and_check(archive, &staging)
        .and_then(|()| fs::rename(&staging, &dest).map_err(|e| DataError::io(&dest, e)));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result.map(|()| dest)
}

fn extract_and_check(archive: &Path, staging: &Path) -> Result<(), DataError> {
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
        Ok(super::read_text(&p)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    };
    let fine = read_names("fine_label_names.txt")?;
    let coarse = read_names("coarse_label_names.txt")?;
    let train = dir.join("train.bin");
    let bytes = super::read_file(&train)?;
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
