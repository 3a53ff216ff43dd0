//! The module layering, written once ([`LAYERS`]) and enforced: every `crate::` path in every
//! `src/**/*.rs` (in `use` lines and inline, comments skipped) must point at the file's own node or
//! a strictly lower layer. A forbidden edge fails with file:line and the edge; a new top-level
//! module fails until it is placed in the table. Issue 16, point 4.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The allowed graph, low to high: a node may import only nodes of strictly lower layers (and
/// itself). A node is a top-level module of `src/`, except `sys::simd`, which is its own node.
///
/// Deviations from "one idea per layer", and why:
/// - `sys::simd` (the SIMD SHA-256 multi-buffer and RS AVX2 kernels) is pure computation and sits
///   at the bottom, but lives under `src/sys/` because `unsafe` is allowed only there; it imports
///   nothing above `digest`.
/// - `io` (file-backed implementations of `verity`'s `BlockSource` / `BlockSink`) sits above
///   `gate` and below `sys`: `sys` reads images through it, and it needs nothing from `sys`.
/// - `attest` could sit lower (it reads images, the event log and PCR math); it is placed just
///   below `cli`, its only caller, so no layer under it ever has to care about attestation.
/// - A row whose module does not exist has no files and constrains nothing (the table was
///   written before `admit` and `host` landed).
const LAYERS: &[(&str, &[&str])] = &[
    ("L0", &["hex", "limits", "timing"]),
    ("L1", &["digest"]),
    ("L2", &["sys::simd"]),
    ("L3", &["verity"]),
    ("L4", &["sign"]),
    ("L5", &["gate"]),
    ("L6", &["io"]),
    ("L7", &["sys"]),
    ("L8", &["image"]),
    ("L9", &["measure"]),
    ("L10", &["rollback"]),
    ("L11", &["admit"]),
    ("L12", &["host"]),
    ("L13", &["merge"]),
    ("L14", &["reboot"]),
    ("L15", &["boot"]),
    ("L16", &["attest"]),
    ("L17", &["cli"]),
];

/// Edges tolerated while a move across layers is in progress, as (file, target node, who removes
/// it); tolerated only for that file. Empty since issue 16 straightened the layers: every edge
/// goes down. Never add one for new code: place the code in the right layer instead.
const PENDING: &[(&str, &str, &str)] = &[];

/// Files that are not a module of the library graph: the crate root declares the modules, the
/// binary calls the library through `verity::`.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Layer index of each node.
fn layer_of() -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for (i, (_, nodes)) in LAYERS.iter().enumerate() {
        for n in *nodes {
            assert!(m.insert(*n, i).is_none(), "{n} appears twice in LAYERS");
        }
    }
    m
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The node a file belongs to, from its path relative to `src/`; None for the crate roots.
fn node_of(rel: &Path) -> Option<String> {
    let parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && ROOTS.contains(&parts[0].as_str()) {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_string();
    if top == "sys" && parts.len() > 1 && parts[1].trim_end_matches(".rs") == "simd" {
        return Some("sys::simd".into());
    }
    Some(top)
}

/// The node a path after `crate::` names: its first segment, or `sys::simd`.
fn target_node(segs: &[String]) -> Option<String> {
    let first = segs.first()?;
    if first == "sys" && segs.get(1).is_some_and(|s| s == "simd") {
        return Some("sys::simd".into());
    }
    Some(first.clone())
}

/// Source text with comments and the contents of string literals blanked out (newlines kept, so
/// line numbers stay right): a `crate::` path or a word such as `File` in a comment or a message
/// is not an import. Char literals are kept; a lifetime is not mistaken for one.
fn code_only(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_prefix(&b, i) {
            // Raw string: r"...", r#"..."#, br"...".
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(b[i..j.min(b.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = (j + 1).min(b.len());
            out.push('"');
            out.extend(b[i + 1..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the first is skipped.
            let end = if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                j + 1
            } else if b.get(i + 2) == Some(&'\'') {
                i + 3
            } else {
                i + 1
            };
            let end = end.min(b.len());
            out.extend(&b[i..end]);
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && is_ident(b[i - 1])
}

/// Whether the `r` at `i` starts a raw string: it begins a token, or follows a `b` that does.
fn raw_prefix(b: &[char], i: usize) -> bool {
    !ident_before(b, i) || (b[i - 1] == 'b' && !ident_before(b, i - 1))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path that starts at `crate::` (or `$crate::`) in code, as (line, segments). Groups
/// (`crate::{a, b::{c, d}}`) are expanded into one path per leaf.
fn crate_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = find(&b, i, "crate::") {
        let start = off;
        i = off + "crate::".len();
        if start > 0 && is_ident(b[start - 1]) {
            continue;
        }
        let line = b[..start].iter().filter(|&&c| c == '\n').count() + 1;
        let mut paths = Vec::new();
        parse_tree(&b, &mut i, Vec::new(), &mut paths);
        out.extend(paths.into_iter().map(|p| (line, p)));
    }
    out
}

fn find(b: &[char], from: usize, pat: &str) -> Option<usize> {
    let p: Vec<char> = pat.chars().collect();
    (from..b.len().saturating_sub(p.len() - 1)).find(|&k| b[k..k + p.len()] == p[..])
}

fn skip_ws(b: &[char], i: &mut usize) {
    while *i < b.len() && b[*i].is_whitespace() {
        *i += 1;
    }
}

/// Parses a use tree at `i` (`a::b`, `a::{b, c}`, `*`), pushing one path per leaf.
fn parse_tree(b: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        skip_ws(b, i);
        if *i < b.len() && b[*i] == '{' {
            *i += 1;
            loop {
                skip_ws(b, i);
                if *i >= b.len() || b[*i] == '}' {
                    *i += 1;
                    return;
                }
                parse_tree(b, i, path.clone(), out);
                skip_ws(b, i);
                if *i < b.len() && b[*i] == ',' {
                    *i += 1;
                }
            }
        }
        let s = *i;
        while *i < b.len() && is_ident(b[*i]) {
            *i += 1;
        }
        if *i > s {
            path.push(b[s..*i].iter().collect());
        } else if *i < b.len() && b[*i] == '*' {
            *i += 1;
        }
        let mut j = *i;
        skip_ws(b, &mut j);
        if b.get(j) == Some(&':') && b.get(j + 1) == Some(&':') {
            *i = j + 2;
            continue;
        }
        // `self` inside a group names the prefix itself.
        if path.last().is_some_and(|s| s == "self") {
            path.pop();
        }
        if !path.is_empty() {
            out.push(path);
        }
        return;
    }
}

struct Edge {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// Every edge between two different nodes, found in the sources.
fn edges() -> Vec<Edge> {
    let root = src();
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let Some(from) = node_of(rel) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        for (line, segs) in crate_paths(&code_only(&text)) {
            let Some(to) = target_node(&segs) else {
                continue;
            };
            let rel_name = format!("src/{}", rel.display());
            let seen = out
                .last()
                .is_some_and(|e: &Edge| e.file == rel_name && e.line == line && e.to == to);
            if to != from && !seen {
                out.push(Edge {
                    file: rel_name,
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    out
}

#[test]
fn every_edge_goes_down() {
    let bad = violations(&edges());
    assert!(
        bad.is_empty(),
        "{} forbidden imports (a module may import only strictly lower layers; see LAYERS in \
         tests/layering.rs):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// One message per edge that is not allowed, naming file:line and the edge.
fn violations(edges: &[Edge]) -> Vec<String> {
    let layer = layer_of();
    let mut bad = Vec::new();
    for e in edges {
        let (Some(&lf), Some(&lt)) = (layer.get(e.from.as_str()), layer.get(e.to.as_str())) else {
            bad.push(format!(
                "{}:{}: {} -> {}: a node missing from LAYERS (tests/layering.rs)",
                e.file, e.line, e.from, e.to
            ));
            continue;
        };
        if lt >= lf && !PENDING.iter().any(|p| p.0 == e.file && p.1 == e.to) {
            bad.push(format!(
                "{}:{}: forbidden edge {} ({}) -> {} ({})",
                e.file, e.line, e.from, LAYERS[lf].0, e.to, LAYERS[lt].0
            ));
        }
    }
    bad
}

/// The checker itself: up, sideways and unknown edges are named; down edges and the SIMD leaf
/// under `sys/` pass.
#[test]
fn the_checker_refuses_what_it_must() {
    let edge = |file: &str, from: &str, to: &str| Edge {
        file: file.into(),
        line: 7,
        from: from.into(),
        to: to.into(),
    };
    let bad = violations(&[
        edge("src/verity/x.rs", "verity", "sys::simd"),
        edge("src/image/x.rs", "image", "verity"),
        edge("src/verity/x.rs", "verity", "sys"),
        edge("src/sys/simd/x.rs", "sys::simd", "sys"),
        edge("src/hex.rs", "hex", "limits"),
        edge("src/image/x.rs", "image", "reboot"),
        edge("src/nova/x.rs", "nova", "hex"),
    ]);
    assert_eq!(
        bad,
        [
            "src/verity/x.rs:7: forbidden edge verity (L3) -> sys (L7)",
            "src/sys/simd/x.rs:7: forbidden edge sys::simd (L2) -> sys (L7)",
            "src/hex.rs:7: forbidden edge hex (L0) -> limits (L0)",
            "src/image/x.rs:7: forbidden edge image (L8) -> reboot (L14)",
            "src/nova/x.rs:7: nova -> hex: a node missing from LAYERS (tests/layering.rs)",
        ]
    );
    assert_eq!(node_of(Path::new("sys/simd/mod.rs")).unwrap(), "sys::simd");
    assert_eq!(node_of(Path::new("sys/dm.rs")).unwrap(), "sys");
    assert_eq!(node_of(Path::new("gate.rs")).unwrap(), "gate");
    assert_eq!(node_of(Path::new("lib.rs")), None);
}

#[test]
fn every_top_level_module_is_placed() {
    let layer = layer_of();
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let nodes: BTreeSet<String> = files
        .iter()
        .filter_map(|f| node_of(f.strip_prefix(src()).unwrap()))
        .collect();
    let missing: Vec<_> = nodes
        .iter()
        .filter(|n| !layer.contains_key(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "modules not in LAYERS (place them in tests/layering.rs): {missing:?}"
    );
    // The bottom node really is a separate folder, so the rule about it constrains something.
    assert!(nodes.contains("sys::simd"), "src/sys/simd/ is missing");
}

/// The table is a strict order by construction; this checks the construction: every node in one
/// layer only, and the graph it allows (each node to every lower node) has no cycle, checked by
/// a topological sort rather than by trusting the indices.
#[test]
fn the_table_is_acyclic() {
    let layer = layer_of();
    let allowed: BTreeMap<&str, Vec<&str>> = layer
        .iter()
        .map(|(n, &l)| {
            let lower = layer
                .iter()
                .filter(|(_, &m)| m < l)
                .map(|(k, _)| *k)
                .collect();
            (*n, lower)
        })
        .collect();
    let mut done = BTreeSet::new();
    while done.len() < allowed.len() {
        let ready: Vec<&str> = allowed
            .iter()
            .filter(|(n, deps)| !done.contains(*n) && deps.iter().all(|d| done.contains(d)))
            .map(|(n, _)| *n)
            .collect();
        assert!(!ready.is_empty(), "LAYERS allows a cycle among {allowed:?}");
        done.extend(ready);
    }
}

/// `verity/` is pure compute: it works on `BlockSource` / `BlockSink` and byte slices, and the
/// file-backed implementations live in `io/`.
#[test]
fn verity_does_no_io() {
    const FORBIDDEN: &[&str] = &[
        "std::fs",
        "std::os",
        "File",
        "libc",
        "rustix",
        "std::process",
    ];
    let dir = src().join("verity");
    let mut files = Vec::new();
    rs_files(&dir, &mut files);
    assert!(!files.is_empty());
    let mut bad = Vec::new();
    for f in files {
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        for (n, line) in code.lines().enumerate() {
            for w in FORBIDDEN {
                if contains_word(line, w) {
                    bad.push(format!("{}:{}: {w}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "I/O in src/verity/:\n{}", bad.join("\n"));
}

fn contains_word(line: &str, w: &str) -> bool {
    line.match_indices(w).any(|(k, _)| {
        let before = line[..k].chars().next_back();
        let after = line[k + w.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[test]
fn the_scanner_sees_what_it_must() {
    let code = code_only(
        "use crate::a::b; // crate::c\nlet s = \"// x crate::z\"; crate::d::e();\n/* crate::f */\n\
         use crate::{g, sys::{simd::x, dm}, h::{self}};\nlet c = '\"'; crate::i::j;\n\
         fn f<'a>() {} crate::k::l; r#\"crate::y\"#; br\"\\\"; crate::m;",
    );
    let got: Vec<(usize, String)> = crate_paths(&code)
        .into_iter()
        .map(|(l, s)| (l, target_node(&s).unwrap()))
        .collect();
    let want: Vec<(usize, String)> = [
        (1, "a"),
        (2, "d"),
        (4, "g"),
        (4, "sys::simd"),
        (4, "sys"),
        (4, "h"),
        (5, "i"),
        (6, "k"),
        (6, "m"),
    ]
    .into_iter()
    .map(|(l, s)| (l, s.to_string()))
    .collect();
    assert_eq!(got, want);
    assert!(contains_word("use std::fs::File;", "File"));
    assert!(!contains_word("FileSource", "File"));
}
