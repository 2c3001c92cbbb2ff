//! The layering of `src/lib.rs`, checked on the source: no module imports from a module later
//! in the data flow, only `model`, `train`, `embed` and `bench` name burn, and no two
//! sibling modules, at any depth, use each other through any chain. (One crate keeps the build
//! to one dependency tree; these tests enforce the layering instead of crate boundaries.) Test
//! modules and doc comments are exempt: a test may reach anywhere.

use std::path::Path;

/// The flow, earliest first; a module may import from itself and anything before it, and from
/// its peers in the same group.
const LAYERS: &[&[&str]] = &[
    &["store", "simd", "progress"],
    &["codes"],
    &["index"],
    &["config"],
    &["data", "semantics"],
    &["model"],
    &["train"],
    &["embed"],
    &["iwan"],
    &["eval"],
    &["report"],
    &["artifacts"],
    &["experiment"],
    &["bench", "slurm"],
    &["serve", "cli"],
];

/// Modules that may name burn.
const BURN: &[&str] = &["model", "train", "embed", "bench"];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a source file without its `#[cfg(test)]` module and without comments.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path in `code`, including each item of a grouped
/// `use crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group (nested groups belong to their first segment).
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && !c.is_whitespace() => {
                        out.push(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_later_stage_and_burn_stays_at_the_edge() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer(&top).unwrap_or_else(|| panic!("src/{top} is not in LAYERS"));
        let text = code(&std::fs::read_to_string(file).unwrap());
        for name in crate_paths(&text) {
            checked += 1;
            if let Some(l) = layer(&name)
                && l > own
            {
                violations.push(format!("src/{}: {top} uses crate::{name}", rel.display()));
            }
        }
        if !BURN.contains(&top.as_str()) && text.contains("burn::") {
            violations.push(format!("src/{}: {top} names burn", rel.display()));
        }
    }
    assert!(
        checked > 150,
        "only {checked} crate paths found: is the scan broken?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scan_sees_a_violation() {
    // Hand-made source for the scanner itself: an import up the flow, in code and not in a
    // comment or a test module.
    let text = "use crate::store;\n// crate::cli in a comment\nfn f() { crate::serve::x() }\n\
                #[cfg(test)]\nmod tests { use crate::cli; }\n";
    let code = code(text);
    assert!(code.contains("crate::serve") && !code.contains("crate::cli"));
    assert!(layer("serve") > layer("store"));
    assert_eq!(crate_paths(&code), ["store", "serve"]);
    let grouped = crate_paths("use crate::{config::{self, Loaded}, data, index::exact::dot};");
    assert_eq!(grouped, ["config", "data", "index"]);
}

/// The module path of a source file under `src/`: `index/hamming.rs` is `[index, hamming]`,
/// `index/mod.rs` is `[index]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every path that `code` starts with `crate::`, `super::` (repeated) or `self::`, as the
/// module it starts from and its segments; grouped imports give one path per item.
fn module_paths(code: &str) -> Vec<(String, Vec<String>)> {
    let segments = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s.trim_start();
        loop {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            rest = &rest[ident.len()..];
            out.push(ident);
            match rest.strip_prefix("::") {
                Some(r) if !r.starts_with('{') => rest = r,
                _ => break,
            }
        }
        out
    };
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            // Skip `super::` inside a longer path (`x::super::`) and repeated `super::super::`
            // counted from its second word.
            let before = &code[..i];
            if before.ends_with("::") || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let mut rest = &code[i..];
            let mut base = String::new();
            while let Some(r) = rest
                .strip_prefix("super::")
                .or_else(|| rest.strip_prefix("crate::"))
                .or_else(|| rest.strip_prefix("self::"))
            {
                base.push_str(&rest[..rest.len() - r.len()]);
                rest = r;
                if base.starts_with("crate::") || base.starts_with("self::") {
                    break;
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            item.push(c);
                        }
                        '}' if depth == 0 => break,
                        '}' => {
                            depth -= 1;
                            item.push(c);
                        }
                        ',' if depth == 0 => {
                            out.push((base.clone(), segments(&item)));
                            item.clear();
                        }
                        _ => item.push(c),
                    }
                }
                out.push((base.clone(), segments(&item)));
            } else {
                out.push((base, segments(rest)));
            }
        }
    }
    out
}

/// Circles between sibling modules at any depth: module A uses sibling B (or anything inside
/// B) and B, through any chain of siblings, uses A. A module and its own parent or children are
/// not siblings (a parent declares its children; children use their parent's items). Only
/// paths that name a module are seen, not items re-exported by a parent.
fn circles(files: &[(std::path::PathBuf, String)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(p, _)| module_of(p)).collect();
    // parent -> child -> (sibling child it uses -> the file that uses it)
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> =
        BTreeMap::new();
    for (path, text) in files {
        let own = module_of(path);
        for (base, segs) in module_paths(&code(text)) {
            let mut target: Vec<String> = if base.starts_with("crate::") {
                Vec::new()
            } else if base.starts_with("self::") {
                own.clone()
            } else {
                // Each `super::` climbs one level from the file's module.
                let ups = base.matches("super::").count();
                own[..own.len().saturating_sub(ups)].to_vec()
            };
            // The longest module named by the path.
            let mut named = target.clone();
            for s in segs {
                target.push(s);
                if modules.contains(&target) {
                    named = target.clone();
                } else {
                    break;
                }
            }
            let common = own.iter().zip(&named).take_while(|(a, b)| a == b).count();
            if common == own.len() || common == named.len() {
                continue; // itself, an ancestor or a descendant
            }
            edges
                .entry(own[..common].to_vec())
                .or_default()
                .entry(own[common].clone())
                .or_default()
                .entry(named[common].clone())
                .or_insert_with(|| path.display().to_string());
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &edges {
        let prefix = parent.iter().map(|p| format!("{p}::")).collect::<String>();
        // A circle exists where a module reaches itself.
        for start in graph.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((at, trail)) = stack.pop() {
                for (next, file) in graph.get(&at).into_iter().flatten() {
                    if next == start {
                        let names: Vec<String> = trail
                            .iter()
                            .chain([next])
                            .map(|m| format!("{prefix}{m}"))
                            .collect();
                        found.push(format!("{} (last step in {file})", names.join(" -> ")));
                    } else if seen.insert(next.clone()) {
                        let mut t = trail.clone();
                        t.push(next.clone());
                        stack.push((next.clone(), t));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_circles_between_modules_at_any_depth() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let files: Vec<(std::path::PathBuf, String)> = paths
        .iter()
        .map(|p| {
            (
                p.strip_prefix(&src).unwrap().to_path_buf(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .filter(|(p, _)| p != Path::new("lib.rs") && p != Path::new("main.rs"))
        .collect();
    let edges: usize = files
        .iter()
        .map(|(_, t)| module_paths(&code(t)).len())
        .sum();
    assert!(
        edges > 300,
        "only {edges} module paths found: is the scan broken?"
    );
    let found = circles(&files);
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_scan_sees_a_circle() {
    // Hand-made sources for the scanner itself: siblings a::x and a::y use each other (one
    // through a grouped import, one through a chain via a::z); a::w only uses its parent.
    let file = |p: &str, t: &str| (std::path::PathBuf::from(p), t.to_string());
    let files = [
        file(
            "a/mod.rs",
            "pub mod w; pub mod x; pub mod y; pub mod z; use self::x::X;",
        ),
        file("a/w.rs", "use super::Item;"),
        file("a/x.rs", "use super::{Item, y::Y};"),
        file("a/y.rs", "fn f() { super::z::g() }"),
        file(
            "a/z.rs",
            "use crate::a::x::X;\n#[cfg(test)]\nmod tests { use super::super::w; }",
        ),
        file("b.rs", "use crate::a::w::W;"),
    ];
    let found = circles(&files);
    assert_eq!(
        found,
        [
            "a::x -> a::y -> a::z -> a::x (last step in a/z.rs)",
            "a::y -> a::z -> a::x -> a::y (last step in a/x.rs)",
            "a::z -> a::x -> a::y -> a::z (last step in a/y.rs)",
        ]
    );
    assert!(
        circles(&files[..4]).is_empty(),
        "without a::z there is none"
    );
}
