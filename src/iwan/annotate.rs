//! Image annotations: each image's ranked labels, from a word model or from the ground truth,
//! turned into USF words with strengths for the graph.
//!
//! A run stores its word model's output as `iwan/predicted-<split>.csv` (`image,rank,label,
//! strength`, label = index into the word model's label set: ImageNet classes or CIFAR-100 fine
//! classes), keeping the top [`MAX_TOP_IWK`] labels, so that the IWAN commands and topIWK
//! sweeps rebuild graphs without running the model again.

use super::words::Vocabulary;
use crate::config::DbWords;

/// An image's USF words with strengths in (0, 1], strongest label first.
pub type WordList = Vec<(String, f32)>;

/// Labels per image kept from a word model (topIWK may go up to this without rerunning it).
pub const MAX_TOP_IWK: usize = 10;

/// One split's annotations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SplitAnnotations {
    /// Per image, the word model's labels `(label, strength)`, best first.
    pub predicted: Vec<Vec<(u32, f32)>>,
    /// Per image, its ground-truth fine and coarse class names.
    pub truth: Vec<[String; 2]>,
}

/// Label lists turned into word lists under one vocabulary.
#[derive(Debug, Clone)]
pub struct Annotator<'a> {
    /// The USF vocabulary.
    pub vocabulary: &'a Vocabulary,
    /// Names of the word model's labels.
    pub label_names: &'a [String],
}

/// Adds `(word, strength)` to a list, keeping the larger strength of duplicates.
fn merge(words: &mut WordList, word: String, strength: f32) {
    match words.iter_mut().find(|(w, _)| *w == word) {
        Some(slot) => slot.1 = slot.1.max(strength),
        None => words.push((word, strength)),
    }
}

impl Annotator<'_> {
    /// The words of ranked labels given by name, each word with its label's strength.
    pub fn words<'l>(&self, labels: impl IntoIterator<Item = (&'l str, f32)>) -> WordList {
        let mut words = WordList::new();
        for (label, strength) in labels {
            for w in self.vocabulary.normalize(label) {
                merge(&mut words, w, strength);
            }
        }
        words
    }

    /// Query word lists: each image's top-`top_iwk` predicted labels.
    pub fn queries(&self, split: &SplitAnnotations, top_iwk: usize) -> Vec<WordList> {
        split
            .predicted
            .iter()
            .map(|labels| self.predicted_words(labels, top_iwk))
            .collect()
    }

    /// The words of one image's predicted `labels` (best first), from its `top_iwk` strongest.
    pub fn predicted_words(&self, labels: &[(u32, f32)], top_iwk: usize) -> WordList {
        self.words(
            labels
                .iter()
                .take(top_iwk)
                .map(|&(l, s)| (self.label_names[l as usize].as_str(), s)),
        )
    }

    /// Database word lists under `mode`: predicted words, the label names (strength 1), or both.
    pub fn database(
        &self,
        split: &SplitAnnotations,
        mode: DbWords,
        top_iwk: usize,
    ) -> Vec<WordList> {
        let truth = |t: &[String; 2]| self.words(t.iter().map(|n| (n.as_str(), 1.0)));
        match mode {
            DbWords::Predicted => self.queries(split, top_iwk),
            DbWords::Labels => split.truth.iter().map(truth).collect(),
            DbWords::Both => split
                .predicted
                .iter()
                .zip(&split.truth)
                .map(|(p, t)| {
                    let mut words = self.predicted_words(p, top_iwk);
                    for (w, s) in truth(t) {
                        merge(&mut words, w, s);
                    }
                    words
                })
                .collect(),
        }
    }
}

/// `predicted-<split>.csv` text.
pub fn predicted_csv(predicted: &[Vec<(u32, f32)>]) -> String {
    let mut out = String::from("image,rank,label,strength\n");
    for (i, labels) in predicted.iter().enumerate() {
        for (rank, (label, s)) in labels.iter().enumerate() {
            out.push_str(&format!("{i},{rank},{label},{s}\n"));
        }
    }
    out
}

/// A malformed line of `predicted-<split>.csv`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct PredictedCsvError {
    /// 1-based line number.
    pub line: usize,
    /// What was expected, and the line's text.
    pub what: String,
}

/// Parses `predicted-<split>.csv` for `n` images with labels below `n_labels`; the error names
/// the line and what was expected.
pub fn parse_predicted_csv(
    text: &str,
    n: usize,
    n_labels: usize,
) -> Result<Vec<Vec<(u32, f32)>>, PredictedCsvError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "image,rank,label,strength")) => {}
        other => {
            return Err(PredictedCsvError {
                line: 1,
                what: format!(
                    "expected the header `image,rank,label,strength`, found {:?}",
                    other.map(|l| l.1).unwrap_or("")
                ),
            });
        }
    }
    let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for (no, line) in lines {
        let bad = |what: &str| PredictedCsvError {
            line: no + 1,
            what: format!("{what} in {line:?}"),
        };
        let fields: Vec<&str> = line.split(',').collect();
        let [image, rank, label, strength] = fields[..] else {
            return Err(bad("expected 4 fields"));
        };
        let image: usize = image.parse().map_err(|_| bad("non-numeric image"))?;
        let rank: usize = rank.parse().map_err(|_| bad("non-numeric rank"))?;
        let label: u32 = label.parse().map_err(|_| bad("non-numeric label"))?;
        let strength: f32 = strength.parse().map_err(|_| bad("non-numeric strength"))?;
        if image >= n {
            return Err(bad(&format!("image outside 0..{n}")));
        }
        if label as usize >= n_labels {
            return Err(bad(&format!("label outside 0..{n_labels}")));
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(bad("strength outside (0, 1]"));
        }
        if rank != out[image].len() {
            return Err(bad(&format!("expected rank {}", out[image].len())));
        }
        out[image].push((label, strength));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_merged_words() {
        // hand-made input for a pure-function unit test
        let vocab = Vocabulary::from_words(["dog", "shepherd", "fish", "animal"]);
        let names = vec![
            "German shepherd, German shepherd dog".to_string(),
            "aquarium_fish".to_string(),
            "dog".to_string(),
        ];
        let a = Annotator {
            vocabulary: &vocab,
            label_names: &names,
        };
        let split = SplitAnnotations {
            predicted: vec![vec![(0, 0.5), (2, 0.75), (1, 0.25)]],
            truth: vec![["aquarium_fish".into(), "animal".into()]],
        };
        assert_eq!(
            a.queries(&split, 2),
            vec![vec![
                ("shepherd".to_string(), 0.5),
                ("dog".to_string(), 0.75)
            ]]
        );
        assert_eq!(
            a.database(&split, DbWords::Labels, 2),
            vec![vec![("fish".to_string(), 1.0), ("animal".to_string(), 1.0)]]
        );
        assert_eq!(a.database(&split, DbWords::Both, 1)[0].len(), 4);
    }

    #[test]
    fn predicted_csv_round_trips_and_names_bad_lines() {
        // hand-made input for a pure-function unit test
        let p = vec![vec![(3, 0.5), (1, 0.25)], vec![], vec![(0, 1.0)]];
        assert_eq!(parse_predicted_csv(&predicted_csv(&p), 3, 4).unwrap(), p);
        let err = parse_predicted_csv("image,rank,label,strength\n0,0,9,0.5\n", 1, 4).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.what.contains("label outside"), "{err}");
        let err = parse_predicted_csv("image,rank,label,strength\n0,1,0,0.5\n", 1, 4).unwrap_err();
        assert!(err.to_string().contains("expected rank 0"), "{err}");
        let err = parse_predicted_csv("image,rank,label,strength\n0,0,0,0\n", 1, 4).unwrap_err();
        assert!(err.to_string().contains("strength"), "{err}");
    }
}
