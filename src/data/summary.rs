//! A summary of the loaded data: counts, checksums and vocabulary sizes, as printed by
//! `harness data info` and written to each run's `dataset_summary.json`.

use super::cifar::{Cifar100, FINE_CLASSES, SplitName};
use super::hierarchy::Hierarchy;
use super::usf::UsfNorms;
use serde::Serialize;
use std::collections::BTreeSet;

/// Counts for one CIFAR-100 split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// `train` or `test`.
    pub split: SplitName,
    /// Records in the file.
    pub records: usize,
    /// Records used by this run (a prefix when a subset is configured).
    pub used: usize,
    /// Fewest images of any fine class (over the used records).
    pub fine_min: usize,
    /// Most images of any fine class.
    pub fine_max: usize,
    /// Fewest images of any coarse class.
    pub coarse_min: usize,
    /// Most images of any coarse class.
    pub coarse_max: usize,
    /// sha256 of the file.
    pub sha256: String,
    /// Whether it equals the known value.
    pub sha256_matches: bool,
    /// Fine and coarse label of the first record.
    pub first_record: (u8, u8),
}

/// Everything `harness data info` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSummary {
    /// Train then test.
    pub splits: Vec<SplitSummary>,
    /// Nodes in the class hierarchy.
    pub hierarchy_nodes: usize,
    /// Root id.
    pub hierarchy_root: usize,
    /// Root height (`max_height`).
    pub hierarchy_height: u32,
    /// USF rows.
    pub usf_rows: usize,
    /// Distinct USF cues.
    pub usf_cues: usize,
    /// Distinct USF targets.
    pub usf_targets: usize,
    /// Distinct words (cues and targets).
    pub usf_words: usize,
    /// Rows with a forward strength.
    pub usf_rows_with_fsg: usize,
}

impl DataSummary {
    /// Summarises loaded data. `used` gives the number of records used per split.
    pub fn compute(
        cifar: &Cifar100,
        used: [usize; 2],
        hierarchy: &Hierarchy,
        usf: &UsfNorms,
    ) -> Self {
        let splits = SplitName::ALL
            .iter()
            .zip(used)
            .map(|(&name, used)| {
                let s = cifar.split(name);
                let used = used.min(s.len());
                let mut fine = [0usize; FINE_CLASSES];
                let mut coarse = [0usize; super::cifar::COARSE_CLASSES];
                for i in 0..used {
                    fine[s.fine[i] as usize] += 1;
                    coarse[s.coarse[i] as usize] += 1;
                }
                SplitSummary {
                    split: name,
                    records: s.len(),
                    used,
                    fine_min: fine.iter().copied().min().unwrap_or(0),
                    fine_max: fine.iter().copied().max().unwrap_or(0),
                    coarse_min: coarse.iter().copied().min().unwrap_or(0),
                    coarse_max: coarse.iter().copied().max().unwrap_or(0),
                    sha256: s.sha256.clone(),
                    sha256_matches: s.checksum_matches(),
                    first_record: (
                        s.fine.first().copied().unwrap_or(0),
                        s.coarse.first().copied().unwrap_or(0),
                    ),
                }
            })
            .collect();
        let cues: BTreeSet<&str> = usf.rows.iter().map(|r| r.cue.as_str()).collect();
        let targets: BTreeSet<&str> = usf.rows.iter().map(|r| r.target.as_str()).collect();
        Self {
            splits,
            hierarchy_nodes: hierarchy.len(),
            hierarchy_root: hierarchy.root(),
            hierarchy_height: hierarchy.max_height(),
            usf_rows: usf.rows.len(),
            usf_cues: cues.len(),
            usf_targets: targets.len(),
            usf_words: cues.union(&targets).count(),
            usf_rows_with_fsg: usf.rows.iter().filter(|r| r.fsg.is_some()).count(),
        }
    }
}

/// `fine_label,fine_name,coarse_label,coarse_name,train,test` rows: images per fine class.
pub fn class_counts_csv(cifar: &Cifar100, used: [usize; 2]) -> String {
    let count = |name: SplitName, used: usize| {
        let mut c = [0usize; FINE_CLASSES];
        for &f in &cifar.split(name).fine[..used.min(cifar.split(name).len())] {
            c[f as usize] += 1;
        }
        c
    };
    let (train, test) = (
        count(SplitName::Train, used[0]),
        count(SplitName::Test, used[1]),
    );
    let n = &cifar.names;
    let mut out = String::from("fine_label,fine_name,coarse_label,coarse_name,train,test\n");
    for f in 0..FINE_CLASSES {
        let c = n.fine_to_coarse[f] as usize;
        out.push_str(&format!(
            "{f},{},{c},{},{},{}\n",
            n.fine[f], n.coarse[c], train[f], test[f]
        ));
    }
    out
}
