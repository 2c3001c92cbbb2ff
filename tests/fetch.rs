//! `harness data fetch --archive`: extraction and verification on a locally built tarball of the
//! real files (never over the network).

use crate::common::{data_root, harness, text};
use harness::data::fetch;
use std::path::Path;

/// Builds `cifar-100-binary.tar.gz` with the given members taken from the real data.
fn build_archive(dest: &Path, members: &[&str]) {
    let file = std::fs::File::create(dest).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let dir = data_root().cifar_dir();
    for m in members {
        tar.append_path_with_name(dir.join(m), format!("cifar-100-binary/{m}"))
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn archive_installs_after_md5_check_and_derives_fine_to_coarse() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-100-binary.tar.gz");
    build_archive(&archive, &fetch::MEMBERS);
    let md5 = fetch::md5_file(&archive).unwrap();
    let root = tmp.path().join("root");

    // A wrong md5 installs nothing.
    let out = harness(
        &[
            "data",
            "fetch",
            "--root",
            root.to_str().unwrap(),
            "--archive",
            archive.to_str().unwrap(),
            "--md5",
            "00",
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("does not match the expected 00"), "{err}");
    assert!(!root.join("cifar-100-binary").exists());

    let out = harness(
        &[
            "data",
            "fetch",
            "--root",
            root.to_str().unwrap(),
            "--archive",
            archive.to_str().unwrap(),
            "--md5",
            &md5,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let installed = root.join("cifar-100-binary");
    let derived = std::fs::read_to_string(installed.join("fine_to_coarse.csv")).unwrap();
    let shipped =
        std::fs::read_to_string(data_root().cifar_dir().join("fine_to_coarse.csv")).unwrap();
    assert_eq!(derived.trim(), shipped.trim());
    let names = harness::data::cifar::load_names(&installed).unwrap();
    let test = harness::data::cifar::load_split(
        &installed,
        harness::data::cifar::SplitName::Test,
        &names,
        true,
    )
    .unwrap();
    assert_eq!(test.len(), 10_000);
    // Only the installed folder remains: no staging or partial files.
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("cifar-100-binary")]);

    // Installing again refuses to overwrite.
    let err = fetch::install_archive(&archive, &md5, &root).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn archive_missing_a_member_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("partial.tar.gz");
    build_archive(
        &archive,
        &["test.bin", "fine_label_names.txt", "coarse_label_names.txt"],
    );
    let md5 = fetch::md5_file(&archive).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let err = fetch::install_archive(&archive, &md5, &root).unwrap_err();
    assert!(
        err.to_string()
            .contains("member cifar-100-binary/train.bin is missing"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn garbage_archive_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("junk.tar.gz");
    std::fs::write(&archive, b"this is not gzip").unwrap();
    let md5 = fetch::md5_file(&archive).unwrap();
    let root = tmp.path().join("root");
    let err = fetch::install_archive(&archive, &md5, &root).unwrap_err();
    assert!(err.to_string().contains("not a readable .tar.gz"), "{err}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}
