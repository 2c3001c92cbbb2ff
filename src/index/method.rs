//! [`Method`]: the one list of retrieval methods. Configs, the benches, index files, tables and
//! figures all name a method through it.

use serde::{Deserialize, Serialize};

/// A retrieval method over embeddings and hash codes.
///
/// The declaration order is the order every list of methods follows (configs, benches, tables).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Method {
    /// Algorithm 2: cosine similarity over all embeddings, then top-k.
    Exact,
    /// Algorithm 2's results from an int8 scan with per-row error bounds and an f32 re-score
    /// of the rows that could reach the top k: the same ids, order and scores, fewer bytes.
    ExactBounded,
    /// Algorithm 2 + hashes: Hamming shortlist of `N'`, re-ranked by cosine.
    HammingRerank,
    /// Pure Hamming ranking (Lin et al.).
    Hamming,
    /// Multi-index hashing: exact Hamming k-NN without a linear scan.
    Mih,
    /// Hash + re-rank whose shortlist comes from MIH instead of a scan (same results as
    /// `hamming_rerank`).
    MihRerank,
    /// Hamming shortlist re-ranked by the query's real-valued hash activations.
    Asymmetric,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 7] = [
        Method::Exact,
        Method::ExactBounded,
        Method::HammingRerank,
        Method::Hamming,
        Method::Mih,
        Method::MihRerank,
        Method::Asymmetric,
    ];

    /// The spelling used in configs, file names, tables and on the command line
    /// (`hamming_rerank`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::ExactBounded => "exact_bounded",
            Method::HammingRerank => "hamming_rerank",
            Method::Hamming => "hamming",
            Method::Mih => "mih",
            Method::MihRerank => "mih_rerank",
            Method::Asymmetric => "asymmetric",
        }
    }

    /// The method named `s`, if any.
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the method reads float embeddings (as the database or to re-rank).
    pub fn uses_embeddings(self) -> bool {
        matches!(
            self,
            Method::Exact | Method::ExactBounded | Method::HammingRerank | Method::MihRerank
        )
    }

    /// Whether the method reads binary codes.
    pub fn uses_codes(self) -> bool {
        !matches!(self, Method::Exact | Method::ExactBounded)
    }

    /// Every method's name, comma-separated (for error messages).
    pub fn known() -> String {
        Method::ALL.map(Method::as_str).join(", ")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_for_serde_clap_display_and_parse() {
        use clap::ValueEnum;
        for m in Method::ALL {
            let yaml = serde_json::to_string(&m).unwrap();
            assert_eq!(yaml, format!("\"{}\"", m.as_str()));
            assert_eq!(Method::from_str(m.as_str(), false), Ok(m));
            assert_eq!(Method::parse(&m.to_string()), Some(m));
        }
        assert_eq!(Method::parse("hamming-rerank"), None);
        let mut sorted = Method::ALL;
        sorted.sort();
        assert_eq!(sorted, Method::ALL, "ALL follows the declaration order");
    }
}
