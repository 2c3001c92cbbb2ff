//! Word normalisation: class labels (ImageNet synonyms, CIFAR-100 names) to words of the USF
//! Free Association Norms.
//!
//! The rule, applied to each label:
//! 1. lower-case it and split it into synonyms at commas (`German shepherd, German shepherd dog`);
//! 2. in each synonym, turn `_` and `-` into spaces and collapse whitespace (`aquarium_fish` ->
//!    `aquarium fish`);
//! 3. keep the synonym if it is itself a USF cue or target; otherwise keep its head noun, the
//!    last word (English compounds are head-final: `maple tree` -> `tree`), if that is a USF word;
//! 4. drop duplicates, keeping the first occurrence.
//!
//! A label that yields nothing is reported as uncovered.

use crate::data::usf::UsfNorms;
use std::collections::BTreeSet;

/// The USF vocabulary: every cue and target, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    words: BTreeSet<String>,
}

impl Vocabulary {
    /// All cues and targets of the norms.
    pub fn from_norms(norms: &UsfNorms) -> Self {
        let mut words = BTreeSet::new();
        for a in &norms.rows {
            words.insert(a.cue.clone());
            words.insert(a.target.clone());
        }
        Self { words }
    }

    /// Builds a vocabulary from explicit words (lower-cased).
    pub fn from_words<I: IntoIterator<Item = S>, S: AsRef<str>>(words: I) -> Self {
        Self {
            words: words
                .into_iter()
                .map(|w| w.as_ref().to_lowercase())
                .collect(),
        }
    }

    /// Whether `word` (lower case) is a USF word.
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True without words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The USF words a label maps to, by the rule in the module docs.
    pub fn normalize(&self, label: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for synonym in label.to_lowercase().split(',') {
            let phrase = synonym
                .replace(['_', '-'], " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if phrase.is_empty() {
                continue;
            }
            let pick = if self.contains(&phrase) {
                Some(phrase.clone())
            } else {
                phrase
                    .rsplit(' ')
                    .next()
                    .filter(|head| self.contains(head))
                    .map(String::from)
            };
            if let Some(word) = pick
                && !out.contains(&word)
            {
                out.push(word);
            }
        }
        out
    }
}

/// How many of `labels` map to at least one USF word.
pub fn coverage<'a>(
    vocabulary: &Vocabulary,
    labels: impl IntoIterator<Item = &'a str>,
) -> (usize, usize) {
    let mut covered = 0;
    let mut total = 0;
    for label in labels {
        total += 1;
        if !vocabulary.normalize(label).is_empty() {
            covered += 1;
        }
    }
    (covered, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_underscores_and_head_nouns() {
        // hand-made input for a pure-function unit test
        let v = Vocabulary::from_words(["shepherd", "dog", "fish", "tree", "maple", "lawn mower"]);
        assert_eq!(
            v.normalize("German shepherd, German shepherd dog, Alsatian"),
            vec!["shepherd", "dog"]
        );
        assert_eq!(v.normalize("aquarium_fish"), vec!["fish"]);
        assert_eq!(v.normalize("maple_tree"), vec!["tree"]);
        assert_eq!(v.normalize("lawn_mower"), vec!["lawn mower"]);
        assert_eq!(v.normalize("Dog, dog"), vec!["dog"]);
        assert!(v.normalize("ocarina").is_empty());
        assert_eq!(coverage(&v, ["dog", "ocarina", "maple_tree"]), (2, 3));
    }
}
