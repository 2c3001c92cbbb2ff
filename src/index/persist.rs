//! Saving and loading indexes ([`AnyIndex`], [`save`], [`load`], [`load_mapped`]).
//!
//! Versioned little-endian binary format (version [`FORMAT_VERSION`]):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `HRNSIDX\0` |
//! | 4 | format version (u32) |
//! | 4 | index kind (u32): 1 exact, 2 hamming, 3 hamming_rerank, 4 mih, 5 asymmetric, 6 exact_bounded |
//! | 8 | items `n` (u64) |
//! | 8 | embedding dimension `d` (u64, 0 if none) |
//! | 8 | code bits `h` (u64, 0 if none) |
//! | 4 | parameter tag (u32): 0 none, 1 shortlist factor, 2 shortlist absolute, 3 MIH substrings (0: scan) |
//! | 8 | parameter (u64; f64 bits for a factor) |
//! | | zeros up to byte 64 (and after each section below, up to a multiple of 64) |
//! | `8 * n * ceil(h/64)` | codes (u64 words), if `h > 0` |
//! | `4 * (n * d + 8)` | normalised embeddings (f32) and 8 zeros, if `d > 0` |
//! | `n * ceil(d/8)*8` | int8 rows, for exact_bounded |
//! | `8 * n` | per row the scale and error bound (f32 pairs), for exact_bounded |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Every section starts at a multiple of 64 bytes (zeros pad the one before), so a file can be
//! memory-mapped and searched in place ([`load_mapped`]): a database larger than memory then
//! costs page cache, not anonymous memory. MIH hash tables are not stored; they are rebuilt from
//! the codes on load (deterministically, with the saved number of substrings). Writing goes
//! through any [`std::io::Write`]; atomic replacement (temp file + rename) is the caller's job.
//! Wrong magic, another version, a truncated or over-long file, a bad checksum or inconsistent
//! fields give an [`IndexError`]. Version 1 files (no alignment, no int8 section) still load,
//! by copy.

use std::io::{Read, Write};
use std::sync::Arc;

use super::asymmetric::AsymmetricIndex;
use super::bounded::BoundedIndex;
use super::exact::ExactIndex;
use super::hamming::HammingIndex;
use super::kernels::{LANES, padded};
use super::mih::MihIndex;
use super::rerank::{HammingRerankIndex, Shortlist};
use super::scan::{Codes, words_for};
use super::storage::Array;
use super::{Hit, IndexError, Method, Query, Scratch, SearchIndex};

/// File magic.
pub const MAGIC: &[u8; 8] = b"HRNSIDX\0";
/// The format version written by this build (it also reads version 1).
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of header fields.
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 8;
/// Sections start at multiples of this.
const ALIGN: usize = 64;

/// The kind number (header field 4) of each method that has a file form.
const KINDS: [(Method, u32); 6] = [
    (Method::Exact, 1),
    (Method::Hamming, 2),
    (Method::HammingRerank, 3),
    (Method::Mih, 4),
    (Method::Asymmetric, 5),
    (Method::ExactBounded, 6),
];

/// The kind number of `method`, one of [`KINDS`] (`save` names each stored variant's method).
fn kind_of(method: Method) -> u32 {
    KINDS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|&(_, k)| k)
        .expect("every method save writes has a kind number")
}

/// Any index this module can persist; also usable directly as a [`SearchIndex`].
#[derive(Debug, Clone)]
pub enum AnyIndex {
    /// [`ExactIndex`].
    Exact(ExactIndex),
    /// [`BoundedIndex`] (stored as its exact rows; the int8 copy is rebuilt on load).
    Bounded(BoundedIndex),
    /// [`HammingIndex`].
    Hamming(HammingIndex),
    /// [`HammingRerankIndex`].
    HammingRerank(HammingRerankIndex),
    /// [`MihIndex`].
    Mih(MihIndex),
    /// [`AsymmetricIndex`].
    Asymmetric(AsymmetricIndex),
}

impl AnyIndex {
    /// The wrapped index as a trait object.
    pub fn as_search(&self) -> &dyn SearchIndex {
        match self {
            AnyIndex::Exact(i) => i,
            AnyIndex::Bounded(i) => i,
            AnyIndex::Hamming(i) => i,
            AnyIndex::HammingRerank(i) => i,
            AnyIndex::Mih(i) => i,
            AnyIndex::Asymmetric(i) => i,
        }
    }

    /// Writes the index in the format above.
    pub fn save<W: Write>(&self, w: W) -> Result<(), IndexError> {
        save(self, w)
    }
}

impl SearchIndex for AnyIndex {
    fn method(&self) -> super::Method {
        self.as_search().method()
    }
    fn len(&self) -> usize {
        self.as_search().len()
    }
    fn bytes_per_item(&self) -> usize {
        self.as_search().bytes_per_item()
    }
    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        self.as_search().search(query, k, scratch, out)
    }
    fn search_many(
        &self,
        queries: &[Query<'_>],
        k: usize,
        pool: &rayon::ThreadPool,
    ) -> Result<Vec<Vec<Hit>>, IndexError> {
        self.as_search().search_many(queries, k, pool)
    }
}

macro_rules! any_from {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for AnyIndex {
            fn from(i: $t) -> Self {
                AnyIndex::$v(i)
            }
        }
    )*};
}
any_from!(ExactIndex => Exact, BoundedIndex => Bounded, HammingIndex => Hamming, HammingRerankIndex => HammingRerank, MihIndex => Mih, AsymmetricIndex => Asymmetric);

/// A writer that tracks the CRC of everything written.
struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    buf: Vec<u8>,
    /// Bytes passed to `inner` so far.
    written: usize,
}

impl<W: Write> CrcWriter<W> {
    /// Writes the header and, if any, the codes section.
    fn start(
        inner: W,
        method: Method,
        n: usize,
        d: usize,
        codes: Option<&Codes>,
        (tag, param): (u32, u64),
    ) -> Result<Self, IndexError> {
        let mut cw = CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            buf: Vec::with_capacity(1 << 17),
            written: 0,
        };
        cw.put(MAGIC)?;
        cw.put(&FORMAT_VERSION.to_le_bytes())?;
        cw.put(&kind_of(method).to_le_bytes())?;
        cw.put(&(n as u64).to_le_bytes())?;
        cw.put(&(d as u64).to_le_bytes())?;
        cw.put(&(codes.map_or(0, |c| c.bits()) as u64).to_le_bytes())?;
        cw.put(&tag.to_le_bytes())?;
        cw.put(&param.to_le_bytes())?;
        cw.pad()?;
        if let Some(c) = codes {
            for v in c.as_words() {
                cw.put(&v.to_le_bytes())?;
            }
            cw.pad()?;
        }
        Ok(cw)
    }

    /// Appends the CRC of everything written and flushes.
    fn finish(mut self) -> Result<(), IndexError> {
        self.flush_buf()?;
        let crc = self.hasher.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.flush()?;
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Zeros up to the next multiple of [`ALIGN`].
    fn pad(&mut self) -> std::io::Result<()> {
        let written = self.written + self.buf.len();
        self.put(&[0u8; ALIGN][..written.next_multiple_of(ALIGN) - written])
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        self.written += self.buf.len();
        self.hasher.update(&self.buf);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn shortlist_param(s: Shortlist) -> (u32, u64) {
    match s {
        Shortlist::Factor(c) => (1, c.to_bits()),
        Shortlist::Absolute(n) => (2, n as u64),
    }
}

/// Writes `index` to `w` (see the module docs for the format).
pub fn save<W: Write>(index: &AnyIndex, w: W) -> Result<(), IndexError> {
    let (method, codes, exact, (tag, param)): (
        Method,
        Option<&Codes>,
        Option<&ExactIndex>,
        (u32, u64),
    ) = match index {
        AnyIndex::Exact(e) => (Method::Exact, None, Some(e), (0, 0)),
        AnyIndex::Bounded(b) => (Method::ExactBounded, None, Some(b.exact()), (0, 0)),
        AnyIndex::Hamming(h) => (Method::Hamming, Some(&h.codes), None, (0, 0)),
        AnyIndex::HammingRerank(r) => (
            Method::HammingRerank,
            Some(&r.codes),
            Some(&r.exact),
            shortlist_param(r.shortlist),
        ),
        AnyIndex::Mih(m) => (
            Method::Mih,
            Some(&m.codes),
            None,
            (3, m.substrings() as u64),
        ),
        AnyIndex::Asymmetric(a) => (
            Method::Asymmetric,
            Some(&a.codes),
            None,
            shortlist_param(a.shortlist),
        ),
    };
    let d = exact.map_or(0, |e| e.dim());
    let mut cw = CrcWriter::start(w, method, index.len(), d, codes, (tag, param))?;
    if let Some(e) = exact {
        for v in e.padded_rows() {
            cw.put(&v.to_le_bytes())?;
        }
        cw.pad()?;
    }
    if let AnyIndex::Bounded(b) = index {
        let (int8, bounds) = b.parts();
        cw.put(&int8.iter().map(|&v| v as u8).collect::<Vec<u8>>())?;
        cw.pad()?;
        for v in bounds {
            cw.put(&v.to_le_bytes())?;
        }
        cw.pad()?;
    }
    cw.finish()
}

/// Writes a hash + re-rank index file (kind 3) whose `n` embedding rows are produced one at
/// a time by `row(i, buf)` and normalised here, as [`ExactIndex::new`] normalises them, so a
/// database far larger than memory can be written. Loading it gives the same index as
/// building one from the same rows.
pub fn save_rerank_streamed<W: Write>(
    w: W,
    codes: &Codes,
    d: usize,
    shortlist: Shortlist,
    mut row: impl FnMut(usize, &mut [f32]),
) -> Result<(), IndexError> {
    shortlist.validate()?;
    if d == 0 {
        return Err(IndexError::InvalidParameter(
            "embedding dimension must be >= 1".into(),
        ));
    }
    let n = codes.len();
    let mut cw = CrcWriter::start(
        w,
        Method::HammingRerank,
        n,
        d,
        Some(codes),
        shortlist_param(shortlist),
    )?;
    let (mut raw, mut unit) = (vec![0f32; d], vec![0f32; d]);
    for i in 0..n {
        row(i, &mut raw);
        super::exact::normalise_into(&raw, &mut unit).map_err(|col| match col {
            Some(col) => IndexError::NonFinite { row: i, col },
            None => IndexError::ZeroNorm { row: i },
        })?;
        for v in &unit {
            cw.put(&v.to_le_bytes())?;
        }
    }
    cw.put(&[0u8; 4 * LANES])?;
    cw.pad()?;
    cw.finish()
}

/// Reads a whole index file from `r` and parses it with [`load`].
pub fn load_from<R: Read>(mut r: R) -> Result<AnyIndex, IndexError> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    load(&bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn to_usize(v: u64, what: &str) -> Result<usize, IndexError> {
    usize::try_from(v)
        .map_err(|_| IndexError::Corrupt(format!("{what} {v} does not fit in memory")))
}

fn shortlist_from(tag: u32, param: u64) -> Result<Shortlist, IndexError> {
    match tag {
        1 => Ok(Shortlist::Factor(f64::from_bits(param))),
        2 => Ok(Shortlist::Absolute(to_usize(param, "shortlist size")?)),
        t => Err(IndexError::Corrupt(format!(
            "parameter tag {t} is not a shortlist"
        ))),
    }
}

/// The header fields.
struct Header {
    version: u32,
    method: Method,
    n: usize,
    d: usize,
    bits: usize,
    tag: u32,
    param: u64,
}

fn header(bytes: &[u8]) -> Result<Header, IndexError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(IndexError::Corrupt(
            "wrong magic bytes (not a harness index file)".into(),
        ));
    }
    let truncated = || {
        IndexError::Corrupt(format!(
            "truncated: {} bytes, the header alone needs {}",
            bytes.len(),
            HEADER_LEN + 4
        ))
    };
    if bytes.len() < 12 {
        return Err(truncated());
    }
    let version = u32_at(bytes, 8);
    if version != 1 && version != FORMAT_VERSION {
        return Err(IndexError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN + 4 {
        return Err(truncated());
    }
    let kind = u32_at(bytes, 12);
    let method = KINDS
        .iter()
        .find(|&&(_, k)| k == kind)
        .map(|&(m, _)| m)
        .ok_or_else(|| IndexError::Corrupt(format!("unknown index kind {kind}")))?;
    let h = Header {
        version,
        method,
        n: to_usize(u64_at(bytes, 16), "item count")?,
        d: to_usize(u64_at(bytes, 24), "dimension")?,
        bits: to_usize(u64_at(bytes, 32), "code length")?,
        tag: u32_at(bytes, 40),
        param: u64_at(bytes, 44),
    };
    let (need_d, need_bits) = (h.method.uses_embeddings(), h.method.uses_codes());
    if need_d != (h.d > 0) || need_bits != (h.bits > 0) || h.bits > super::scan::MAX_BITS {
        return Err(IndexError::Corrupt(format!(
            "{} index with dimension {} and code length {}",
            h.method, h.d, h.bits
        )));
    }
    Ok(h)
}

/// Byte offset and value count of each section: codes (u64), rows (f32), int8 rows, bounds
/// (f32); then the file's total length.
type Sections = ([Option<(usize, usize)>; 4], usize);

fn sections(h: &Header) -> Result<Sections, IndexError> {
    let overflow = || IndexError::Corrupt("sizes overflow".into());
    let v1 = h.version == 1;
    let counts = [
        (h.bits > 0).then(|| h.n.checked_mul(words_for(h.bits))),
        (h.d > 0).then(|| {
            h.n.checked_mul(h.d)
                .and_then(|v| if v1 { Some(v) } else { v.checked_add(LANES) })
        }),
        (h.method == Method::ExactBounded && !v1).then(|| h.n.checked_mul(padded(h.d))),
        (h.method == Method::ExactBounded && !v1).then(|| h.n.checked_mul(2)),
    ];
    let sizes = [8, 4, 1, 4];
    let mut at = if v1 { HEADER_LEN } else { ALIGN };
    let mut out = [None; 4];
    for (i, c) in counts.into_iter().enumerate() {
        if let Some(c) = c {
            let c = c.ok_or_else(overflow)?;
            out[i] = Some((at, c));
            at = c
                .checked_mul(sizes[i])
                .and_then(|b| b.checked_add(at))
                .and_then(|end| {
                    if v1 {
                        Some(end)
                    } else {
                        end.checked_next_multiple_of(ALIGN)
                    }
                })
                .ok_or_else(overflow)?;
        }
    }
    Ok((out, at.checked_add(4).ok_or_else(overflow)?))
}

/// Checks the length and, with `verify`, the checksum of a file of `bytes`.
fn check_file(bytes: &[u8], total: usize, verify: bool) -> Result<(), IndexError> {
    if bytes.len() != total {
        return Err(IndexError::Corrupt(format!(
            "{}: header implies {total} bytes, file has {}",
            if bytes.len() < total {
                "truncated"
            } else {
                "trailing data"
            },
            bytes.len()
        )));
    }
    if verify {
        let stored = u32_at(bytes, total - 4);
        let computed = crc32fast::hash(&bytes[..total - 4]);
        if stored != computed {
            return Err(IndexError::Corrupt(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
    }
    Ok(())
}

/// Where the sections' values come from: copied out of bytes, or borrowed from a mapping.
enum Source<'a> {
    Bytes(&'a [u8]),
    Mapped(&'a Arc<memmap2::Mmap>),
}

impl Source<'_> {
    fn u64s(&self, (at, len): (usize, usize)) -> Result<Array<u64>, IndexError> {
        match self {
            Source::Bytes(b) => Ok(b[at..at + 8 * len]
                .chunks_exact(8)
                .map(|c| u64_at(c, 0))
                .collect::<Vec<u64>>()
                .into()),
            Source::Mapped(m) => Array::mapped(m, at, len),
        }
    }

    fn f32s(&self, (at, len): (usize, usize)) -> Result<Array<f32>, IndexError> {
        match self {
            Source::Bytes(b) => Ok(b[at..at + 4 * len]
                .chunks_exact(4)
                .map(|c| f32::from_bits(u32_at(c, 0)))
                .collect::<Vec<f32>>()
                .into()),
            Source::Mapped(m) => Array::mapped(m, at, len),
        }
    }

    fn i8s(&self, (at, len): (usize, usize)) -> Result<Array<i8>, IndexError> {
        match self {
            Source::Bytes(b) => Ok(b[at..at + len]
                .iter()
                .map(|&v| v as i8)
                .collect::<Vec<i8>>()
                .into()),
            Source::Mapped(m) => Array::mapped(m, at, len),
        }
    }
}

/// Builds the index from a checked file's sections.
fn assemble(
    h: &Header,
    s: &[Option<(usize, usize)>; 4],
    src: Source<'_>,
) -> Result<AnyIndex, IndexError> {
    let corrupt = |e: IndexError| IndexError::Corrupt(e.to_string());
    let codes = match s[0] {
        Some(sec) => Some(Arc::new(
            Codes::from_array(h.n, h.bits, src.u64s(sec)?).map_err(corrupt)?,
        )),
        None => None,
    };
    let exact = match s[1] {
        Some(sec) if h.version == 1 => {
            Some(ExactIndex::from_normalised(h.n, h.d, src.f32s(sec)?.to_vec()).map_err(corrupt)?)
        }
        Some(sec) => Some(ExactIndex::from_mapped(h.n, h.d, src.f32s(sec)?).map_err(corrupt)?),
        None => None,
    };
    let (tag, param) = (h.tag, h.param);
    Ok(match (h.method, codes, exact) {
        (Method::Exact, None, Some(e)) => AnyIndex::Exact(e),
        (Method::ExactBounded, None, Some(e)) => AnyIndex::Bounded(match (s[2], s[3]) {
            (Some(q), Some(b)) => BoundedIndex::from_parts(Arc::new(e), src.i8s(q)?, src.f32s(b)?)?,
            _ => BoundedIndex::new(Arc::new(e)),
        }),
        (Method::Hamming, Some(c), None) => AnyIndex::Hamming(HammingIndex::new(c)),
        (Method::HammingRerank, Some(c), Some(e)) => AnyIndex::HammingRerank(
            HammingRerankIndex::new(c, Arc::new(e), shortlist_from(tag, param)?)
                .map_err(corrupt)?,
        ),
        (Method::Mih, Some(c), None) => {
            if tag != 3 {
                return Err(IndexError::Corrupt(format!(
                    "MIH file has parameter tag {tag}"
                )));
            }
            // 0 substrings: the cost model chose the scan.
            AnyIndex::Mih(match to_usize(param, "substrings")? {
                0 => MihIndex::scan_only(c),
                m => MihIndex::with_substrings(c, m).map_err(corrupt)?,
            })
        }
        (Method::Asymmetric, Some(c), None) => AnyIndex::Asymmetric(
            AsymmetricIndex::new(c, shortlist_from(tag, param)?).map_err(corrupt)?,
        ),
        _ => return Err(IndexError::Corrupt("inconsistent index kind".into())),
    })
}

/// Parses an index file held in memory (copying its arrays).
pub fn load(bytes: &[u8]) -> Result<AnyIndex, IndexError> {
    let h = header(bytes)?;
    let (s, total) = sections(&h)?;
    check_file(bytes, total, true)?;
    assemble(&h, &s, Source::Bytes(bytes))
}

/// Maps an index file and searches it in place: codes, rows and int8 rows stay in the file
/// (page cache), so only MIH's tables take anonymous memory. `verify` checks the CRC first,
/// which reads the whole file once. Version 1 files, and any file on a big-endian machine,
/// are loaded by copy instead.
pub fn load_mapped(path: &std::path::Path, verify: bool) -> Result<AnyIndex, IndexError> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the mapping is read-only; the harness writes index files by rename, never in
    // place, so a mapped file is not modified while mapped (another program truncating it
    // would be a bus error, as for any mapped file).
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file)? });
    let h = header(&map)?;
    if h.version == 1 || cfg!(target_endian = "big") {
        return load(&map);
    }
    let (s, total) = sections(&h)?;
    check_file(&map, total, verify)?;
    assemble(&h, &s, Source::Mapped(&map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::exact::tests::random_rows;
    use crate::index::hamming::tests::random_codes;

    fn all_indexes() -> Vec<AnyIndex> {
        let (n, d) = (50, 10);
        let exact = ExactIndex::new(n, d, &random_rows(n, d, 1)).unwrap();
        let codes = Arc::new(random_codes(n, 65, 20, 2));
        vec![
            exact.clone().into(),
            BoundedIndex::new(Arc::new(exact.clone())).into(),
            HammingIndex::new(codes.clone()).into(),
            HammingRerankIndex::new(codes.clone(), Arc::new(exact), Shortlist::Factor(1.5))
                .unwrap()
                .into(),
            MihIndex::with_substrings(codes.clone(), 5).unwrap().into(),
            AsymmetricIndex::new(codes, Shortlist::Absolute(7))
                .unwrap()
                .into(),
        ]
    }

    #[test]
    fn round_trip_gives_identical_results() {
        let e = random_rows(1, 10, 3);
        let c = random_codes(1, 65, 1, 4);
        let a = vec![0.25f32; 65];
        let query = Query {
            embedding: Some(&e),
            code: Some(c.code(0)),
            activations: Some(&a),
            exclude: Some(3),
        };
        let mut s = Scratch::default();
        for index in all_indexes() {
            let mut buf = Vec::new();
            index.save(&mut buf).unwrap();
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &buf).unwrap();
            let loaded = load_from(std::fs::File::open(file.path()).unwrap()).unwrap();
            assert_eq!(loaded.method(), index.method());
            let (mut a1, mut a2) = (Vec::new(), Vec::new());
            index.search(&query, 10, &mut s, &mut a1).unwrap();
            loaded.search(&query, 10, &mut s, &mut a2).unwrap();
            assert_eq!(a1, a2, "{}", index.method());
            assert_eq!(a1.len(), 10);
        }
    }

    #[test]
    fn damaged_files_are_clear_errors() {
        for index in all_indexes() {
            let mut buf = Vec::new();
            index.save(&mut buf).unwrap();
            // truncated anywhere
            for cut in [0, 5, 11, 30, HEADER_LEN + 3, buf.len() / 2, buf.len() - 1] {
                let err = load(&buf[..cut]).unwrap_err();
                assert!(matches!(err, IndexError::Corrupt(_)), "cut {cut}: {err}");
            }
            // trailing byte
            let mut long = buf.clone();
            long.push(0);
            assert!(matches!(load(&long), Err(IndexError::Corrupt(m)) if m.contains("trailing")));
            // flipped payload byte -> checksum
            let mut bad = buf.clone();
            let mid = ALIGN + (bad.len() - ALIGN) / 2;
            bad[mid] ^= 0x10;
            assert!(matches!(load(&bad), Err(IndexError::Corrupt(m)) if m.contains("checksum")));
            // wrong magic
            let mut magic = buf.clone();
            magic[0] = b'X';
            assert!(matches!(load(&magic), Err(IndexError::Corrupt(m)) if m.contains("magic")));
            // other version
            let mut v3 = buf.clone();
            v3[8..12].copy_from_slice(&3u32.to_le_bytes());
            assert!(matches!(
                load(&v3),
                Err(IndexError::Version {
                    found: 3,
                    supported: 2
                })
            ));
            // unknown kind
            let mut k = buf.clone();
            k[12..16].copy_from_slice(&9u32.to_le_bytes());
            assert!(matches!(load(&k), Err(IndexError::Corrupt(_))));
        }
    }

    #[test]
    fn mapped_files_search_in_place_with_identical_results() {
        let e = random_rows(1, 10, 3);
        let c = random_codes(1, 65, 1, 4);
        let a = vec![0.25f32; 65];
        let query = Query {
            embedding: Some(&e),
            code: Some(c.code(0)),
            activations: Some(&a),
            exclude: Some(3),
        };
        let mut s = Scratch::default();
        for index in all_indexes() {
            let file = tempfile::NamedTempFile::new().unwrap();
            index
                .save(std::io::BufWriter::new(
                    std::fs::File::create(file.path()).unwrap(),
                ))
                .unwrap();
            for verify in [true, false] {
                let mapped = load_mapped(file.path(), verify).unwrap();
                let in_place = match &mapped {
                    AnyIndex::Exact(e) => e.is_mapped(),
                    AnyIndex::Bounded(b) => b.exact().is_mapped() && b.is_mapped(),
                    AnyIndex::Hamming(h) => h.codes.is_mapped(),
                    AnyIndex::HammingRerank(r) => r.codes.is_mapped() && r.exact.is_mapped(),
                    AnyIndex::Mih(m) => m.codes.is_mapped(),
                    AnyIndex::Asymmetric(a) => a.codes.is_mapped(),
                };
                assert!(in_place, "{} was copied", index.method());
                let (mut a1, mut a2) = (Vec::new(), Vec::new());
                index.search(&query, 10, &mut s, &mut a1).unwrap();
                mapped.search(&query, 10, &mut s, &mut a2).unwrap();
                assert_eq!(a1, a2, "{}", index.method());
            }
            // A flipped byte is caught when verifying; a cut file always.
            let mut bytes = std::fs::read(file.path()).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            std::fs::write(file.path(), &bytes).unwrap();
            assert!(matches!(
                load_mapped(file.path(), true),
                Err(IndexError::Corrupt(m)) if m.contains("checksum")
            ));
            std::fs::write(file.path(), &bytes[..bytes.len() - 9]).unwrap();
            assert!(matches!(
                load_mapped(file.path(), false),
                Err(IndexError::Corrupt(m)) if m.contains("truncated")
            ));
        }
    }

    #[test]
    fn version_1_files_still_load() {
        // A version 1 exact index written out by hand (hand-made bytes for a unit test of the
        // parser): the 52-byte header, then the rows unpadded, then the CRC.
        let (n, d) = (3usize, 2usize);
        let rows = [0.6f32, 0.8, 1.0, 0.0, 0.0, -1.0];
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for v in [n as u64, d as u64, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        for v in rows {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let AnyIndex::Exact(e) = load(&b).unwrap() else {
            panic!("not an exact index");
        };
        assert_eq!(e.normalised_rows(), &rows);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &b).unwrap();
        let AnyIndex::Exact(m) = load_mapped(file.path(), true).unwrap() else {
            panic!("not an exact index");
        };
        assert_eq!(m, e);
    }

    #[test]
    fn io_errors_propagate() {
        struct Fail;
        impl Write for Fail {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let index = &all_indexes()[1];
        assert!(matches!(index.save(Fail), Err(IndexError::Io(_))));
    }
}
