//! The layering of `src/lib.rs`, checked on the source: no module imports from a module later
//! in the data flow, and only `model`, `train`, `embed` and `throughput` name burn. (One crate
//! keeps the build to one dependency tree; this test is what enforces the layering instead of
//! crate boundaries.) Test modules and doc comments are exempt: a test may reach anywhere.

use std::path::Path;

/// The flow, earliest first; a module may import from itself and anything before it, and from
/// its peers in the same group.
const LAYERS: &[&[&str]] = &[
    &["store", "simd", "progress"],
    &["config"],
    &["data", "semantics", "codes"],
    &["model"],
    &["train"],
    &["embed"],
    &["index", "iwan"],
    &["eval"],
    &["report"],
    &["artifacts"],
    &["experiment"],
    &["throughput", "slurm"],
    &["serve", "cli"],
];

/// Modules that may name burn.
const BURN: &[&str] = &["model", "train", "embed", "throughput"];

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
