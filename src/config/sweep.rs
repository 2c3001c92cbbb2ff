//! Sweep expansion: a config with `sweep.params` becomes a list of single-run configs.
//!
//! Each sweep key is a dotted path into the config (`iwan.top_iwk`). A point of the sweep is
//! applied by rendering the base config to a JSON tree, replacing the addressed values and
//! deserializing the tree again, so every run is type-checked and validated exactly like a
//! config file. A key that names no field is rejected with the closest valid path.

use super::{Config, ConfigError, Loaded, SweepMode, hash};
use serde_json::Value;

/// One run of an experiment: a fully resolved single config and how it differs from the base.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Position in the sweep, from 0.
    pub index: usize,
    /// The sweep values applied to the base config, as (dotted path, value).
    pub overrides: Vec<(String, Value)>,
    /// The resolved config of this run (its `sweep` is `None`).
    pub config: Config,
    /// [`hash`] of `config`.
    pub hash: String,
    /// Folder name of the run: the overrides and a short hash, e.g. `top_iwk=3-1a2b3c4d`.
    pub id: String,
}

/// Expands the sweep of `loaded` into its runs (one run when there is no sweep).
pub fn expand(loaded: &Loaded) -> Result<Vec<Run>, ConfigError> {
    let mut base = loaded.config.clone();
    // Where runs execute is not what they compute: no run carries the slurm section.
    base.slurm = None;
    let Some(sweep) = base.sweep.take() else {
        return Ok(vec![make_run(0, Vec::new(), base)]);
    };
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        origin: loaded.origin.clone(),
        line: super::locate(&loaded.text, field),
        field: field.to_string(),
        message,
    };
    if sweep.params.is_empty() {
        return Err(invalid(
            "sweep.params",
            "name at least one parameter to sweep".into(),
        ));
    }
    let tree = serde_json::to_value(&base).map_err(|e| invalid("sweep", e.to_string()))?;
    for (key, values) in &sweep.params {
        let field = format!("sweep.params.{key}");
        if let Err(message) = check_field(&tree, key) {
            return Err(invalid(&field, message));
        }
        if values.is_empty() {
            return Err(invalid(
                &field,
                format!("the value list for `{key}` is empty"),
            ));
        }
    }
    let keys: Vec<&String> = sweep.params.keys().collect();
    let lists: Vec<&Vec<Value>> = sweep.params.values().collect();
    let points: Vec<Vec<usize>> = match sweep.mode {
        SweepMode::Product => product(&lists.iter().map(|l| l.len()).collect::<Vec<_>>()),
        SweepMode::Zip => {
            let n = lists[0].len();
            if let Some((k, l)) = keys.iter().zip(&lists).find(|(_, l)| l.len() != n) {
                return Err(invalid(
                    "sweep.params",
                    format!(
                        "zip mode needs lists of equal length: `{}` has {n} values but `{k}` has {}",
                        keys[0],
                        l.len()
                    ),
                ));
            }
            (0..n).map(|i| vec![i; keys.len()]).collect()
        }
    };
    let mut runs = Vec::with_capacity(points.len());
    for (index, point) in points.into_iter().enumerate() {
        let overrides: Vec<(String, Value)> = keys
            .iter()
            .zip(&lists)
            .zip(&point)
            .map(|((k, l), &i)| ((*k).clone(), l[i].clone()))
            .collect();
        let mut t = tree.clone();
        for (k, v) in &overrides {
            set_field(&mut t, k, v.clone());
        }
        let describe = || {
            overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config: Config = serde_json::from_value(t).map_err(|e| {
            invalid(
                "sweep.params",
                format!("sweep point {} ({}): {e}", index, describe()),
            )
        })?;
        loaded.check(&config).map_err(|e| match e {
            ConfigError::Invalid {
                origin,
                field,
                line,
                message,
            } => ConfigError::Invalid {
                origin,
                field,
                line,
                message: format!("{message} (in sweep point {index}: {})", describe()),
            },
            other => other,
        })?;
        runs.push(make_run(index, overrides, config));
    }
    Ok(runs)
}

fn make_run(index: usize, overrides: Vec<(String, Value)>, config: Config) -> Run {
    let hash = hash(&config);
    let label: String = if overrides.is_empty() {
        "run".to_string()
    } else {
        overrides
            .iter()
            .map(|(k, v)| {
                let short = k.rsplit('.').next().unwrap_or(k);
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{short}={value}")
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=,._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let id = format!("{label}-{}", &hash[..8]);
    Run {
        index,
        overrides,
        config,
        hash,
        id,
    }
}

/// Index tuples of the cartesian product, the last position varying fastest.
fn product(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &n in sizes {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..n).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(tree, |node, seg| node.as_object()?.get(seg))
}

/// Whether the dotted `key` names a field of the config `tree` (a config rendered to JSON):
/// one the tree holds, or one it leaves out because its value is the default (inserting it
/// into its section still deserialises as a known field). Otherwise the message names the
/// closest field.
pub(crate) fn check_field(tree: &Value, key: &str) -> Result<(), String> {
    let known = !key.starts_with("sweep")
        && !key.starts_with("slurm")
        && (lookup(tree, key).is_some() || {
            let mut probe = tree.clone();
            set_field(&mut probe, key, Value::Null)
                && serde_json::from_value::<Config>(probe)
                    .err()
                    .is_none_or(|e| !e.to_string().contains("unknown field"))
        });
    if known {
        return Ok(());
    }
    let hint = closest(key, &field_paths(tree))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    Err(format!("`{key}` names no config field{hint}"))
}

/// Sets the dotted `path` of `tree` to `value`, inserting the last segment into its section
/// when the tree leaves it out; false when a section on the way is missing.
pub(crate) fn set_field(tree: &mut Value, path: &str, value: Value) -> bool {
    let (parents, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    let section = parents
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(tree, |node, seg| node.as_object_mut()?.get_mut(seg));
    match section.and_then(Value::as_object_mut) {
        Some(map) => {
            map.insert(leaf.to_string(), value);
            true
        }
        None => false,
    }
}

/// Every dotted path of a config tree that ends at a non-object value, with that value.
pub fn leaves(tree: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match v.as_object() {
            Some(map) => {
                for (k, child) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, out);
                }
            }
            None => out.push((prefix.to_string(), v)),
        }
    }
    let mut out = Vec::new();
    walk("", tree, &mut out);
    out
}

/// Every dotted path of the tree that ends at a non-object value.
fn field_paths(tree: &Value) -> Vec<String> {
    leaves(tree).into_iter().map(|(p, _)| p).collect()
}

/// The candidate with the smallest edit distance to `key` (case-insensitive), if reasonably close.
fn closest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a str> {
    let key = key.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&key, &c.to_lowercase()), c))
        .min()
        .filter(|(d, c)| *d <= c.len().max(4) / 2)
        .map(|(_, c)| c.as_str())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Run>, ConfigError> {
        Loaded::from_text("test.yaml", text.to_string())?.runs()
    }

    #[test]
    fn product_enumerates_every_combination() {
        let runs = load(
            "name: s\nsweep:\n  params:\n    iwan.top_iwk: [1, 2, 3]\n    model.h: [16, 32]\n",
        )
        .unwrap();
        assert_eq!(runs.len(), 6);
        assert_eq!(runs[0].config.iwan.top_iwk, 1);
        assert_eq!(runs[0].config.model.h, 16);
        assert_eq!(runs[1].config.model.h, 32);
        assert_eq!(runs[5].config.iwan.top_iwk, 3);
        assert!(runs.iter().all(|r| r.config.sweep.is_none()));
        assert_eq!(runs[1].id, format!("top_iwk=1,h=32-{}", &runs[1].hash[..8]));
        let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn zip_pairs_values_and_checks_lengths() {
        let runs = load(
            "name: s\nsweep:\n  mode: zip\n  params:\n    iwan.top_iwk: [1, 2]\n    iwan.top_wwk: [3, 4]\n",
        )
        .unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[1].config.iwan.top_iwk, runs[1].config.iwan.top_wwk),
            (2, 4)
        );
        let err = load(
            "name: s\nsweep:\n  mode: zip\n  params:\n    iwan.top_iwk: [1, 2]\n    iwan.top_wwk: [3]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("equal length"), "{err}");
    }

    #[test]
    fn unknown_sweep_key_suggests_the_closest_field() {
        let err = load("name: s\nsweep:\n  params:\n    iwan.top_iwkk: [1]\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`iwan.top_iwkk` names no config field"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `iwan.top_iwk`"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn sweep_values_are_validated() {
        let err = load("name: s\nsweep:\n  params:\n    model.h: [16, 0]\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("model.h") && msg.contains("sweep point 1"),
            "{msg}"
        );
        let err = load("name: s\nsweep:\n  params:\n    model.h: [sixteen]\n").unwrap_err();
        assert!(err.to_string().contains("sweep point 0"), "{err}");
    }

    #[test]
    fn empty_sweep_lists_are_rejected() {
        let err = load("name: s\nsweep:\n  params:\n    model.h: []\n").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = load("name: s\nsweep:\n  params: {}\n").unwrap_err();
        assert!(err.to_string().contains("at least one parameter"), "{err}");
    }

    #[test]
    fn edit_distance_matches_hand_counts() {
        // hand-made input for a pure-function unit test
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
