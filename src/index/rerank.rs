//! The Hamming-shortlist + cosine re-rank index ([`HammingRerankIndex`]): a shortlist of
//! [`Shortlist`] items by Hamming distance (a scan, or multi-index hashing), re-ranked by the
//! cosine of the float embeddings.

use std::sync::Arc;

use super::exact::{ExactIndex, dot, prepare_query};
use super::mih::MihIndex;
use super::scan::{Codes, shortlist_into};
use super::{Hit, IndexError, Preamble, Query, Scratch, SearchIndex, preamble};

/// How many Hamming candidates a re-ranking index shortlists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shortlist {
    /// `N' = ceil(c * k)`, `c >= 1`.
    Factor(f64),
    /// `N' = max(n, k)`.
    Absolute(usize),
}

impl Default for Shortlist {
    /// `Factor(2.0)`, the reported default.
    fn default() -> Self {
        Shortlist::Factor(2.0)
    }
}

impl Shortlist {
    /// Rejects a factor below 1 or not finite.
    pub fn validate(&self) -> Result<(), IndexError> {
        match *self {
            Shortlist::Factor(c) if !(c.is_finite() && c >= 1.0) => {
                Err(IndexError::ShortlistFactor(c))
            }
            _ => Ok(()),
        }
    }

    /// Shortlist size for `k` (before clamping to the database size).
    pub fn size(&self, k: usize) -> usize {
        match *self {
            Shortlist::Factor(c) => ((c * k as f64).ceil() as usize).max(k),
            Shortlist::Absolute(n) => n.max(k),
        }
    }
}

/// Hamming shortlist of `N'` items, then re-ranked by cosine similarity of
/// the float embeddings (the [`ExactIndex`] rows and [`dot`]); `score` is the
/// cosine. With `N' >= N` the result equals [`ExactIndex`]'s.
#[derive(Debug, Clone)]
pub struct HammingRerankIndex {
    pub(crate) codes: Arc<Codes>,
    pub(crate) exact: Arc<ExactIndex>,
    pub(crate) shortlist: Shortlist,
    /// Takes the shortlist by multi-index hashing instead of the scan (the
    /// same items: MIH's results equal the scan's, ties included).
    mih: Option<Arc<MihIndex>>,
}

impl HammingRerankIndex {
    /// Combines codes and embeddings of the same items.
    pub fn new(
        codes: Arc<Codes>,
        exact: Arc<ExactIndex>,
        shortlist: Shortlist,
    ) -> Result<Self, IndexError> {
        shortlist.validate()?;
        if codes.len() != exact.len() {
            return Err(IndexError::Mismatch(format!(
                "{} codes but {} embeddings",
                codes.len(),
                exact.len()
            )));
        }
        Ok(Self {
            codes,
            exact,
            shortlist,
            mih: None,
        })
    }

    /// Takes shortlists with `mih`, which must index these codes.
    pub fn with_mih(mut self, mih: Arc<MihIndex>) -> Result<Self, IndexError> {
        if !Arc::ptr_eq(&mih.codes, &self.codes) {
            return Err(IndexError::Mismatch(
                "the MIH shortlister indexes other codes".into(),
            ));
        }
        self.mih = Some(mih);
        Ok(self)
    }

    /// The shortlist rule.
    pub fn shortlist(&self) -> Shortlist {
        self.shortlist
    }
}

impl SearchIndex for HammingRerankIndex {
    fn method(&self) -> super::Method {
        if self.mih.is_some() {
            super::Method::MihRerank
        } else {
            super::Method::HammingRerank
        }
    }

    fn len(&self) -> usize {
        self.codes.n
    }

    fn bytes_per_item(&self) -> usize {
        match &self.mih {
            Some(m) => m.bytes_per_item() + self.exact.bytes_per_item(),
            None => self.codes.words * 8 + self.exact.bytes_per_item(),
        }
    }

    fn search(
        &self,
        query: &Query<'_>,
        k: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        let Preamble { ex, n_eff, k_eff } = preamble(k, query.exclude, self.codes.n, out)?;
        self.codes.check_query(query.code)?;
        prepare_query(query.embedding, self.exact.dim(), &mut scratch.query)?;
        let q = query.code.unwrap_or_default();
        if k_eff == 0 {
            return Ok(());
        }
        let size = self.shortlist.size(k).min(n_eff);
        match &self.mih {
            Some(mih) => {
                let mut cands = std::mem::take(&mut scratch.cands);
                mih.search(query, size, scratch, &mut cands)?;
                scratch.cands = cands;
            }
            None => shortlist_into(&self.codes, q, ex, size, scratch),
        }
        let Scratch {
            query: qv,
            cands,
            top,
            ..
        } = scratch;
        top.reset(k_eff);
        for c in cands.iter() {
            top.push(dot(qv, self.exact.row(c.id as usize)), c.id);
        }
        top.drain_sorted(out);
        Ok(())
    }
}
