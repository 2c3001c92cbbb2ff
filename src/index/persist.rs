//! Saving and loading indexes ([`AnyIndex`], [`save`], [`load`]).
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
//! | 4 | parameter tag (u32): 0 none, 1 shortlist factor, 2 shortlist absolute, 3 MIH substrings |
//! | 8 | parameter (u64; f64 bits for a factor) |
//! | `8 * n * ceil(h/64)` | codes (u64 words), if `h > 0` |
//! | `4 * n * d` | normalised embeddings (f32), if `d > 0` |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! MIH hash tables and the bounded index's int8 rows are not stored; they are rebuilt from the
//! codes or the exact rows on load
//! (deterministically, with the saved number of substrings). Writing goes
//! through any [`std::io::Write`]; atomic replacement (temp file + rename) is
//! the caller's job. Wrong magic, another version, a truncated or over-long
//! file, a bad checksum or inconsistent fields give an [`IndexError`].

use std::io::{Read, Write};
use std::sync::Arc;

use super::asymmetric::AsymmetricIndex;
use super::bounded::BoundedIndex;
use super::exact::ExactIndex;
use super::hamming::{Codes, HammingIndex, HammingRerankIndex, Shortlist, words_for};
use super::mih::MihIndex;
use super::{Hit, IndexError, Query, Scratch, SearchIndex};

/// File magic.
pub const MAGIC: &[u8; 8] = b"HRNSIDX\0";
/// The format version written and read by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the payload.
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 8;

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
    fn name(&self) -> &'static str {
        self.as_search().name()
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
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
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
    let (kind, codes, exact, (tag, param)): (u32, Option<&Codes>, Option<&ExactIndex>, (u32, u64)) =
        match index {
            AnyIndex::Exact(e) => (1, None, Some(e), (0, 0)),
            AnyIndex::Bounded(b) => (6, None, Some(b.exact()), (0, 0)),
            AnyIndex::Hamming(h) => (2, Some(&h.codes), None, (0, 0)),
            AnyIndex::HammingRerank(r) => (
                3,
                Some(&r.codes),
                Some(&r.exact),
                shortlist_param(r.shortlist),
            ),
            AnyIndex::Mih(m) => (4, Some(&m.codes), None, (3, m.substrings() as u64)),
            AnyIndex::Asymmetric(a) => (5, Some(&a.codes), None, shortlist_param(a.shortlist)),
        };
    let mut cw = CrcWriter {
        inner: w,
        hasher: crc32fast::Hasher::new(),
        buf: Vec::with_capacity(1 << 17),
    };
    cw.put(MAGIC)?;
    cw.put(&FORMAT_VERSION.to_le_bytes())?;
    cw.put(&kind.to_le_bytes())?;
    cw.put(&(index.len() as u64).to_le_bytes())?;
    cw.put(&(exact.map_or(0, |e| e.dim()) as u64).to_le_bytes())?;
    cw.put(&(codes.map_or(0, |c| c.bits()) as u64).to_le_bytes())?;
    cw.put(&tag.to_le_bytes())?;
    cw.put(&param.to_le_bytes())?;
    if let Some(c) = codes {
        for v in c.as_words() {
            cw.put(&v.to_le_bytes())?;
        }
    }
    if let Some(e) = exact {
        for v in e.normalised_rows() {
            cw.put(&v.to_le_bytes())?;
        }
    }
    cw.flush_buf()?;
    let crc = cw.hasher.clone().finalize();
    cw.inner.write_all(&crc.to_le_bytes())?;
    cw.inner.flush()?;
    Ok(())
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

/// Parses an index file held in memory.
pub fn load(bytes: &[u8]) -> Result<AnyIndex, IndexError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(IndexError::Corrupt(
            "wrong magic bytes (not a harness index file)".into(),
        ));
    }
    if bytes.len() < 12 {
        return Err(IndexError::Corrupt(format!(
            "truncated: {} bytes, the header alone needs {}",
            bytes.len(),
            HEADER_LEN + 4
        )));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(IndexError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN + 4 {
        return Err(IndexError::Corrupt(format!(
            "truncated: {} bytes, the header alone needs {}",
            bytes.len(),
            HEADER_LEN + 4
        )));
    }
    let kind = u32_at(bytes, 12);
    let n = to_usize(u64_at(bytes, 16), "item count")?;
    let d = to_usize(u64_at(bytes, 24), "dimension")?;
    let bits = to_usize(u64_at(bytes, 32), "code length")?;
    let tag = u32_at(bytes, 40);
    let param = u64_at(bytes, 44);
    let (need_d, need_bits) = match kind {
        1 | 6 => (true, false),
        2 | 4 | 5 => (false, true),
        3 => (true, true),
        k => return Err(IndexError::Corrupt(format!("unknown index kind {k}"))),
    };
    if need_d != (d > 0) || need_bits != (bits > 0) || bits > super::hamming::MAX_BITS {
        return Err(IndexError::Corrupt(format!(
            "kind {kind} with dimension {d} and code length {bits}"
        )));
    }
    let code_words = n.checked_mul(words_for(bits));
    let floats = n.checked_mul(d);
    let total = code_words
        .and_then(|c| c.checked_mul(8))
        .zip(floats.and_then(|f| f.checked_mul(4)))
        .and_then(|(c, f)| c.checked_add(f))
        .and_then(|p| p.checked_add(HEADER_LEN + 4))
        .ok_or_else(|| IndexError::Corrupt("sizes overflow".into()))?;
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
    let body = &bytes[..total - 4];
    let stored = u32_at(bytes, total - 4);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(IndexError::Corrupt(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let mut at = HEADER_LEN;
    let codes = if bits > 0 {
        let nw = code_words.unwrap_or(0);
        let words: Vec<u64> = body[at..at + nw * 8]
            .chunks_exact(8)
            .map(|c| u64_at(c, 0))
            .collect();
        at += nw * 8;
        Some(Arc::new(
            Codes::new(n, bits, words).map_err(|e| IndexError::Corrupt(e.to_string()))?,
        ))
    } else {
        None
    };
    let exact = if d > 0 {
        let data: Vec<f32> = body[at..]
            .chunks_exact(4)
            .map(|c| f32::from_bits(u32_at(c, 0)))
            .collect();
        Some(
            ExactIndex::from_normalised(n, d, data)
                .map_err(|e| IndexError::Corrupt(e.to_string()))?,
        )
    } else {
        None
    };
    let corrupt = |e: IndexError| IndexError::Corrupt(e.to_string());
    Ok(match (kind, codes, exact) {
        (1, None, Some(e)) => AnyIndex::Exact(e),
        (6, None, Some(e)) => AnyIndex::Bounded(BoundedIndex::new(Arc::new(e))),
        (2, Some(c), None) => AnyIndex::Hamming(HammingIndex::new(c)),
        (3, Some(c), Some(e)) => AnyIndex::HammingRerank(
            HammingRerankIndex::new(c, Arc::new(e), shortlist_from(tag, param)?)
                .map_err(corrupt)?,
        ),
        (4, Some(c), None) => {
            if tag != 3 {
                return Err(IndexError::Corrupt(format!(
                    "MIH file has parameter tag {tag}"
                )));
            }
            AnyIndex::Mih(
                MihIndex::with_substrings(c, to_usize(param, "substrings")?).map_err(corrupt)?,
            )
        }
        (5, Some(c), None) => AnyIndex::Asymmetric(
            AsymmetricIndex::new(c, shortlist_from(tag, param)?).map_err(corrupt)?,
        ),
        _ => return Err(IndexError::Corrupt("inconsistent index kind".into())),
    })
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
            assert_eq!(loaded.name(), index.name());
            let (mut a1, mut a2) = (Vec::new(), Vec::new());
            index.search(&query, 10, &mut s, &mut a1).unwrap();
            loaded.search(&query, 10, &mut s, &mut a2).unwrap();
            assert_eq!(a1, a2, "{}", index.name());
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
            let mid = HEADER_LEN + (bad.len() - HEADER_LEN) / 2;
            bad[mid] ^= 0x10;
            assert!(matches!(load(&bad), Err(IndexError::Corrupt(m)) if m.contains("checksum")));
            // wrong magic
            let mut magic = buf.clone();
            magic[0] = b'X';
            assert!(matches!(load(&magic), Err(IndexError::Corrupt(m)) if m.contains("magic")));
            // other version
            let mut v2 = buf.clone();
            v2[8..12].copy_from_slice(&2u32.to_le_bytes());
            assert!(matches!(
                load(&v2),
                Err(IndexError::Version {
                    found: 2,
                    supported: 1
                })
            ));
            // unknown kind
            let mut k = buf.clone();
            k[12..16].copy_from_slice(&9u32.to_le_bytes());
            assert!(matches!(load(&k), Err(IndexError::Corrupt(_))));
        }
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
