//! The structure ARCHITECTURE.md describes, as a test: which part of `src/` may use
//! which. A part is a top-level module (`src/plan/`, `src/engine.rs`), `lib` (the
//! crate root) or `main` (the binary: `src/main.rs` and the modules it declares).
//!
//! The rules are the block under "Dependency rules" in ARCHITECTURE.md; this test reads
//! them from there, so the list a reader finds is the list that is enforced. It scans
//! every `use` and every `crate::` path in the code of every file under `src/`
//! (comments and string literals are left out), and the `tenantform::` paths of
//! `src/main.rs`, and fails naming file, line, path and the rule each broken use breaks.
//! Test-only code (`#[cfg(test)]` modules, inline or in their own file) may use any
//! part: a test reaches where it must.
//!
//! It also holds the library to its documentation: every `pub` item of the library
//! (functions, types, traits, constants, statics), every variant of a `pub` enum and
//! every method of a `pub` trait has a doc comment, so that a service embedding the
//! crate finds each one explained. Struct fields, restricted visibility, test-only code
//! and the binary's own modules are left out; the failure names each file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the rules are, and the line that opens their block.
const RULES_FILE: &str = "ARCHITECTURE.md";
const RULES_MARKER: &str = "<!-- dependency rules: read by tests/architecture.rs -->";

/// What one part may use.
#[derive(Debug, Default)]
struct PartRule {
    /// Parts it may use (besides itself); `*` for any.
    may_use: BTreeSet<String>,
    /// Path prefixes it must not use, as segments: `state::StateStore`, `std::fs`.
    must_not_use: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Rules {
    parts: BTreeMap<String, PartRule>,
}

impl Rules {
    /// The rules of the block after [`RULES_MARKER`] in `text`: lines of the form
    /// `PART may use: PART...` (`-` for none, `*` for any) and
    /// `PART must not use: PATH...`; `#` starts a comment.
    fn parse(text: &str) -> Result<Rules, String> {
        let start = text
            .find(RULES_MARKER)
            .ok_or_else(|| format!("{RULES_FILE} has no line {RULES_MARKER:?}"))?;
        let after = &text[start..];
        let open = after
            .find("```")
            .ok_or("no code block after the dependency-rules marker")?;
        let body_start = open + after[open..].find('\n').ok_or("unterminated block")? + 1;
        let body_len = after[body_start..]
            .find("```")
            .ok_or("the dependency-rules block is not closed")?;
        let mut parts: BTreeMap<String, PartRule> = BTreeMap::new();
        for (i, raw) in after[body_start..body_start + body_len].lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || {
                format!(
                    "rule line {} ({raw:?}) is not `PART may use: ...` or `PART must not use: ...`",
                    i + 1
                )
            };
            let (part, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let rest = rest.trim();
            let names = |list: &str| -> Vec<String> {
                list.split([' ', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "-")
                    .map(str::to_owned)
                    .collect()
            };
            let rule = parts.entry(part.to_owned()).or_default();
            if let Some(list) = rest.strip_prefix("may use:") {
                rule.may_use.extend(names(list));
            } else if let Some(list) = rest.strip_prefix("must not use:") {
                rule.must_not_use.extend(
                    names(list)
                        .iter()
                        .map(|p| p.split("::").map(str::to_owned).collect()),
                );
            } else {
                return Err(bad());
            }
        }
        if parts.is_empty() {
            return Err("the dependency-rules block is empty".into());
        }
        for (part, rule) in &parts {
            for used in &rule.may_use {
                if used != "*" && !parts.contains_key(used) {
                    return Err(format!(
                        "the rule of {part} names {used}, which has no rule of its own"
                    ));
                }
            }
        }
        Ok(Rules { parts })
    }
}

/// One source file: its path as reported, and its text.
struct Source {
    path: String,
    text: String,
}

/// A use that breaks a rule.
#[derive(Debug)]
struct Violation {
    file: String,
    line: usize,
    path: String,
    rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.path, self.rule
        )
    }
}

/// The part a file under `src/` belongs to, and its module path inside its crate.
/// `binary` names the modules `src/main.rs` declares: their files are the binary's.
fn part_and_module(path: &str, binary: &BTreeSet<String>) -> (String, Vec<String>) {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut module: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    match module.first().map(String::as_str) {
        Some("lib") | None => ("lib".into(), Vec::new()),
        Some("main") => ("main".into(), Vec::new()),
        Some(p) if binary.contains(p) => ("main".into(), module),
        Some(p) => (p.to_owned(), module),
    }
}

/// The modules of the binary: those `src/main.rs` declares.
fn binary_modules(sources: &[Source]) -> BTreeSet<String> {
    sources
        .iter()
        .filter(|s| s.path == "src/main.rs")
        .flat_map(|s| declared_modules(&code_only(&s.text)))
        .map(|(name, _)| name)
        .collect()
}

/// `src` with comments, string, char and byte literals replaced by spaces (newlines
/// kept), so that offsets and lines stay where they were.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (c == b'r' || (c == b'b' && next == Some(b'r')))
            && (i == 0 || !ident(b[i - 1]))
            && {
                let r = if c == b'b' { i + 1 } else { i };
                let hashes = b[r + 1..].iter().take_while(|&&c| c == b'#').count();
                b.get(r + 1 + hashes) == Some(&b'"')
            }
        {
            let r = if c == b'b' { i + 1 } else { i };
            let hashes = b[r + 1..].iter().take_while(|&&c| c == b'#').count();
            let body = r + 2 + hashes;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '"', 'é') or a lifetime ('a).
            let end = if next == Some(b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p + 1)
            } else {
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path found in the code: its segments and the byte offset where it starts.
struct FoundPath {
    segments: Vec<String>,
    offset: usize,
    in_use: bool,
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path of `code` (already [`code_only`]): the leaves of each `use` tree, and
/// every other `a::b::c` sequence.
fn paths(code: &str) -> Vec<FoundPath> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut use_spans: Vec<(usize, usize)> = Vec::new();
    // `use` statements.
    let mut i = 0;
    while let Some(p) = code[i..].find("use") {
        let at = i + p;
        i = at + 3;
        let before_ok = at == 0 || !is_ident_byte(b[at - 1]);
        let after_ok = b.get(at + 3).is_some_and(|c| c.is_ascii_whitespace());
        if !(before_ok && after_ok) || (at > 0 && b[at - 1] == b'$') {
            continue;
        }
        let Some(len) = code[at..].find(';') else {
            break;
        };
        let end = at + len;
        use_spans.push((at, end));
        let tokens = tokenize(code, at + 3, end);
        let mut pos = 0;
        expand_tree(&tokens, &mut pos, Vec::new(), at, &mut found);
        i = end;
    }
    // Other paths: maximal `ident(::ident)+` runs outside `use` statements.
    let mut i = 0;
    while i < b.len() {
        if !is_ident_byte(b[i]) || (i > 0 && (is_ident_byte(b[i - 1]) || b[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        if use_spans.iter().any(|&(s, e)| i >= s && i < e) || (i > 1 && &b[i - 2..i] == b"::") {
            i += 1;
            continue;
        }
        let start = i;
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < b.len() && is_ident_byte(b[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            segments.push(code[s..j].to_owned());
            if b.get(j) == Some(&b':')
                && b.get(j + 1) == Some(&b':')
                && b.get(j + 2).is_some_and(|&c| is_ident_byte(c))
            {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 && !segments[0].starts_with(|c: char| c.is_ascii_digit()) {
            found.push(FoundPath {
                segments,
                offset: start,
                in_use: false,
            });
        }
        i = j.max(i + 1);
    }
    found
}

/// The tokens of a `use` tree between `from` and `to`: identifiers, `::`, `{`, `}`,
/// `,`, `*`, each with its offset.
fn tokenize(code: &str, from: usize, to: usize) -> Vec<(String, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if is_ident_byte(c) {
            let s = i;
            while i < to && is_ident_byte(b[i]) {
                i += 1;
            }
            out.push((code[s..i].to_owned(), s));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(("::".into(), i));
            i += 2;
        } else {
            out.push(((c as char).to_string(), i));
            i += 1;
        }
    }
    out
}

/// Expands a use tree into its leaves, each with the whole path from the root.
fn expand_tree(
    tokens: &[(String, usize)],
    pos: &mut usize,
    prefix: Vec<String>,
    mut leaf_offset: usize,
    found: &mut Vec<FoundPath>,
) {
    let mut path = prefix;
    while *pos < tokens.len() {
        let (t, off) = &tokens[*pos];
        match t.as_str() {
            "::" => *pos += 1,
            "{" => {
                *pos += 1;
                loop {
                    expand_tree(tokens, pos, path.clone(), leaf_offset, found);
                    match tokens.get(*pos).map(|(t, _)| t.as_str()) {
                        Some(",") => *pos += 1,
                        Some("}") => {
                            *pos += 1;
                            return;
                        }
                        _ => return,
                    }
                    if tokens.get(*pos).is_some_and(|(t, _)| t == "}") {
                        *pos += 1;
                        return;
                    }
                }
            }
            "," | "}" => break,
            "as" => {
                // The alias names the leaf here; the path is what was imported.
                *pos += 2;
                break;
            }
            _ => {
                leaf_offset = *off;
                if t != "self" || path.is_empty() {
                    path.push(t.clone());
                }
                *pos += 1;
            }
        }
    }
    if !path.is_empty() {
        found.push(FoundPath {
            segments: path,
            offset: leaf_offset,
            in_use: true,
        });
    }
}

/// The modules `code` declares (`mod name;` or `mod name { ... }`): each name, and for
/// an inline one where its block starts and ends, so that `super` inside it is
/// resolved from it.
fn declared_modules(code: &str) -> Vec<(String, Option<(usize, usize)>)> {
    declared_modules_with_cfg(code)
        .into_iter()
        .map(|(name, block, _)| (name, block))
        .collect()
}

/// A module declaration: its name, where an inline one's block starts and ends, and
/// whether it is compiled for tests only.
type DeclaredModule = (String, Option<(usize, usize)>, bool);

/// [`declared_modules`], each with whether it is compiled for tests only (`#[cfg(test)]`
/// right before it): test code may reach any part, as tests must.
fn declared_modules_with_cfg(code: &str) -> Vec<DeclaredModule> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].find("mod") {
        let at = i + p;
        i = at + 3;
        let rest = &code[at + 3..];
        let gap = rest.len() - rest.trim_start().len();
        if (at > 0 && is_ident_byte(b[at - 1])) || gap == 0 {
            continue;
        }
        let name: String = rest[gap..]
            .bytes()
            .take_while(|&c| is_ident_byte(c))
            .map(char::from)
            .collect();
        let after = rest[gap + name.len()..].trim_start();
        if name.is_empty() {
            continue;
        }
        let before = code[..at].trim_end();
        let before = before
            .strip_suffix("pub(crate)")
            .or_else(|| before.strip_suffix("pub"))
            .unwrap_or(before)
            .trim_end();
        let test_only = before.ends_with("#[cfg(test)]");
        if after.starts_with(';') {
            out.push((name, None, test_only));
        } else if after.starts_with('{') {
            let open = code.len() - after.len();
            let mut depth = 0;
            let mut end = b.len();
            for (j, &c) in b.iter().enumerate().skip(open) {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push((name, Some((open, end)), test_only));
        }
    }
    out
}

/// The files that are test-only modules (`#[cfg(test)] mod tests;` in their parent).
fn test_only_files(sources: &[Source]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in sources {
        let dir = match s.path.strip_suffix("/mod.rs") {
            Some(d) => d.to_owned(),
            None if s.path == "src/lib.rs" || s.path == "src/main.rs" => "src".to_owned(),
            None => s.path.strip_suffix(".rs").unwrap_or(&s.path).to_owned(),
        };
        for (name, block, test_only) in declared_modules_with_cfg(&code_only(&s.text)) {
            if test_only && block.is_none() {
                out.insert(format!("{dir}/{name}.rs"));
                out.insert(format!("{dir}/{name}/mod.rs"));
            }
        }
    }
    out
}

/// The parts of the crate: top-level modules of `src/`, with `lib` and `main`.
fn parts_of(sources: &[Source]) -> BTreeSet<String> {
    let binary = binary_modules(sources);
    sources
        .iter()
        .map(|s| part_and_module(&s.path, &binary).0)
        .collect()
}

/// What the crate root re-exports (`pub use engine::{Engine, ...}` in lib.rs): item
/// name to the part it comes from, so that `crate::Engine` counts as a use of `engine`.
fn root_reexports(sources: &[Source], parts: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for s in sources.iter().filter(|s| s.path == "src/lib.rs") {
        for p in paths(&code_only(&s.text)).into_iter().filter(|p| p.in_use) {
            if let (Some(first), Some(last)) = (p.segments.first(), p.segments.last())
                && parts.contains(first)
            {
                map.insert(last.clone(), first.clone());
            }
        }
    }
    map
}

/// Every use in `sources` that breaks `rules`.
fn check(rules: &Rules, sources: &[Source]) -> Vec<Violation> {
    let parts = parts_of(sources);
    let binary = binary_modules(sources);
    let reexports = root_reexports(sources, &parts);
    let test_files = test_only_files(sources);
    let mut out = Vec::new();
    for s in sources {
        if test_files.contains(&s.path) {
            continue;
        }
        let (part, module) = part_and_module(&s.path, &binary);
        let Some(rule) = rules.parts.get(&part) else {
            out.push(Violation {
                file: s.path.clone(),
                line: 1,
                path: part.clone(),
                rule: format!(
                    "part {part} has no rule: add `{part} may use: ...` to the dependency rules in {RULES_FILE}"
                ),
            });
            continue;
        };
        let code = code_only(&s.text);
        let found = paths(&code);
        let with_cfg = declared_modules_with_cfg(&code);
        let test_blocks: Vec<(usize, usize)> = with_cfg
            .iter()
            .filter(|(_, _, test_only)| *test_only)
            .filter_map(|(_, block, _)| *block)
            .collect();
        let modules: Vec<(String, Option<(usize, usize)>)> =
            with_cfg.into_iter().map(|(n, b, _)| (n, b)).collect();
        let declared: BTreeSet<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
        // Names a path in code may start with that are not crates: declared modules
        // (one may share a crate's name, as `blueprint::redis` does) and what `use`s
        // bring in (the `use` itself is checked).
        let mut local: BTreeSet<&str> = declared.clone();
        local.extend(
            found
                .iter()
                .filter(|p| p.in_use)
                .filter_map(|p| p.segments.last().map(String::as_str)),
        );
        for p in &found {
            if test_blocks
                .iter()
                .any(|(start, end)| *start < p.offset && p.offset < *end)
            {
                continue;
            }
            let line = code[..p.offset].matches('\n').count() + 1;
            // The module the path is written in: the file's, and the inline modules
            // around the path.
            let mut here = module.clone();
            here.extend(modules.iter().filter_map(|(name, block)| {
                block
                    .filter(|(start, end)| *start < p.offset && p.offset < *end)
                    .map(|_| name.clone())
            }));
            // The crate-internal target of the path, as segments after `crate::`.
            let internal: Option<Vec<String>> = match p.segments[0].as_str() {
                "crate" if part != "main" => Some(p.segments[1..].to_vec()),
                "tenantform" if part == "main" => Some(p.segments[1..].to_vec()),
                // The binary's own modules are all one part.
                "super" if p.in_use && part != "main" => {
                    let mut base = here;
                    let mut rest = p.segments.as_slice();
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    // Only what leaves the file's own part is a use of another part.
                    (base.first() != Some(&part)).then_some(base)
                }
                first if declared.contains(first) => continue,
                first if !p.in_use && local.contains(first) => continue,
                _ => None,
            };
            let shown = p.segments.join("::");
            let checked: &[String] = match &internal {
                Some(segs) => {
                    let Some(first) = segs.first() else { continue };
                    let target = if parts.contains(first) {
                        first.clone()
                    } else if let Some(from) = reexports.get(first) {
                        from.clone()
                    } else if first == "*" || first == "self" {
                        continue;
                    } else {
                        "lib".to_owned()
                    };
                    if target != part
                        && !rule.may_use.contains("*")
                        && !rule.may_use.contains(&target)
                    {
                        let allowed: Vec<&str> = rule.may_use.iter().map(String::as_str).collect();
                        out.push(Violation {
                            file: s.path.clone(),
                            line,
                            path: shown.clone(),
                            rule: format!(
                                "{part} may not use {target} ({RULES_FILE}, dependency rules: {part} may use: {})",
                                if allowed.is_empty() { "-".to_owned() } else { allowed.join(" ") }
                            ),
                        });
                    }
                    segs
                }
                None => &p.segments,
            };
            for banned in &rule.must_not_use {
                if checked.len() >= banned.len() && checked[..banned.len()] == banned[..] {
                    out.push(Violation {
                        file: s.path.clone(),
                        line,
                        path: shown.clone(),
                        rule: format!(
                            "{part} must not use {} ({RULES_FILE}, dependency rules)",
                            banned.join("::")
                        ),
                    });
                }
            }
        }
    }
    out
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources_under(dir: &Path, root: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources_under(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under the repository");
            out.push(Source {
                path: rel.to_string_lossy().replace('\\', "/"),
                text: std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
            });
        }
    }
}

fn real_rules() -> Rules {
    let text = std::fs::read_to_string(repo().join(RULES_FILE)).expect("ARCHITECTURE.md");
    Rules::parse(&text).unwrap_or_else(|e| panic!("{RULES_FILE}: {e}"))
}

fn source(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
    }
}

#[test]
fn the_source_tree_keeps_the_dependency_rules() {
    let rules = real_rules();
    let mut sources = Vec::new();
    sources_under(&repo().join("src"), &repo(), &mut sources);
    assert!(
        sources.len() > 20,
        "found only {} files under src/",
        sources.len()
    );
    let violations = check(&rules, &sources);
    assert!(
        violations.is_empty(),
        "{} use(s) break the structure ARCHITECTURE.md describes; change the code, or the rule together with the code map:\n  {}",
        violations.len(),
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn the_rules_parse_and_every_part_of_the_crate_has_one() {
    let rules = real_rules();
    let mut sources = Vec::new();
    sources_under(&repo().join("src"), &repo(), &mut sources);
    for part in parts_of(&sources) {
        assert!(rules.parts.contains_key(&part), "{part} has no rule");
    }
    for part in rules.parts.keys() {
        assert!(
            parts_of(&sources).contains(part),
            "{RULES_FILE} has a rule for {part}, which is not a part of the crate"
        );
    }
    let plan = &rules.parts["plan"];
    assert!(
        plan.must_not_use
            .iter()
            .any(|p| p == &["state", "StateStore"])
    );
    assert!(!plan.may_use.contains("provider") && !plan.may_use.contains("connect"));
    assert!(!rules.parts["workflow"].may_use.contains("server"));
    assert!(Rules::parse("no marker").is_err());
    assert!(Rules::parse(&format!("{RULES_MARKER}\n```text\nplan may: x\n```\n")).is_err());
    assert!(
        Rules::parse(&format!(
            "{RULES_MARKER}\n```text\nplan may use: ghost\n```\n"
        ))
        .is_err()
    );
}

fn toy_rules() -> Rules {
    Rules::parse(&format!(
        "{RULES_MARKER}\n```text\n\
         secret may use: -\n\
         provider may use: secret\n\
         server may use: -\n\
         workflow may use: secret engine  # not provider, not server\n\
         engine may use: *\n\
         blueprint may use: -\n\
         blueprint must not use: std::fs tokio\n\
         lib may use: *\n\
         main may use: engine workflow\n\
         ```\n"
    ))
    .expect("toy rules parse")
}

fn toy_tree(extra: Source) -> Vec<Source> {
    vec![
        source(
            "src/lib.rs",
            "pub mod provider;\nmod engine;\npub use engine::Engine;\n",
        ),
        source("src/secret.rs", ""),
        source("src/provider/mod.rs", ""),
        source("src/server/mod.rs", ""),
        source("src/engine.rs", "use crate::provider::Set;\n"),
        source("src/blueprint/mod.rs", ""),
        source("src/workflow/mod.rs", ""),
        extra,
    ]
}

#[test]
fn a_use_that_breaks_a_rule_is_named_with_file_line_and_rule() {
    let rules = toy_rules();
    let bad = source(
        "src/workflow/checks.rs",
        "//! Checks.\n\nuse crate::secret::Secret;\nuse crate::provider::postgres::PostgresConfig;\n",
    );
    let v = check(&rules, &toy_tree(bad));
    assert_eq!(v.len(), 1, "{v:?}");
    let msg = v[0].to_string();
    assert!(
        msg.starts_with("src/workflow/checks.rs:4: crate::provider::postgres::PostgresConfig: workflow may not use provider"),
        "{msg}"
    );
    assert!(msg.contains("workflow may use: engine secret"), "{msg}");
}

#[test]
fn grouped_uses_paths_in_code_and_escaping_supers_are_all_seen() {
    let rules = toy_rules();
    let text = "use crate::{\n    secret::Secret,\n    provider::{self, aws::Clients as C},\n};\n\
                fn f() {\n    let s = \"crate::provider::in_a_string\"; // crate::provider::in_a_comment\n\
                \x20   crate::server::serve_metrics_on_loopback();\n    let _ = crate::Engine::new();\n}\n\
                use super::super::server::X;\n";
    let v = check(&rules, &toy_tree(source("src/workflow/render.rs", text)));
    let found: Vec<(usize, &str)> = v.iter().map(|v| (v.line, v.path.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (3, "crate::provider"),
            (3, "crate::provider::aws::Clients"),
            (10, "super::super::server::X"),
            (7, "crate::server::serve_metrics_on_loopback"),
        ],
        "{v:#?}"
    );
}

#[test]
fn main_is_checked_through_the_librarys_paths_and_bans_reach_external_crates() {
    let rules = toy_rules();
    let main = source(
        "src/main.rs",
        "use tenantform::workflow::Workflow;\nuse tenantform::{Engine, provider::aws};\n",
    );
    let v = check(&rules, &toy_tree(main));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].to_string()
            .starts_with("src/main.rs:2: tenantform::provider::aws: main may not use provider")
    );

    let blueprint = source(
        "src/blueprint/mod.rs",
        "use std::collections::BTreeMap;\nfn f() { let _ = std::fs::read(\"x\"); tokio::spawn(g()); let r = 'x'; let _ = r#\"tokio::x\"#; }\n",
    );
    let mut tree = toy_tree(blueprint);
    tree.retain(|s| !(s.path == "src/blueprint/mod.rs" && s.text.is_empty()));
    let v = check(&rules, &tree);
    let found: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0]
            .starts_with("src/blueprint/mod.rs:2: std::fs::read: blueprint must not use std::fs")
    );
    assert!(
        found[1].starts_with("src/blueprint/mod.rs:2: tokio::spawn: blueprint must not use tokio")
    );
}

#[test]
fn a_part_without_a_rule_is_reported() {
    let v = check(&toy_rules(), &toy_tree(source("src/runs/mod.rs", "")));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].to_string().contains("part runs has no rule"));
}

#[test]
fn local_modules_are_not_taken_for_other_parts_and_test_modules_may_use_any() {
    let rules = toy_rules();
    let blueprint = source(
        "src/blueprint/mod.rs",
        "mod redis;\npub use redis::key_prefix;\nfn f() { redis::resources(); }\n",
    );
    let secret = source(
        "src/secret.rs",
        "pub struct Secret;\nfn f() { crate::provider::Y; }\n#[cfg(test)]\nmod tests {\n    use super::Secret;\n    use super::super::provider::X;\n}\n",
    );
    let mut tree = toy_tree(blueprint);
    tree.retain(|s| {
        !(s.text.is_empty() && (s.path == "src/blueprint/mod.rs" || s.path == "src/secret.rs"))
    });
    tree.push(secret);
    let v = check(&rules, &tree);
    let found: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/secret.rs:2: crate::provider::Y: secret may not use provider"),
        "{found:?}"
    );
}

#[test]
fn the_binarys_own_modules_are_main_and_reach_the_library_as_tenantform() {
    let rules = toy_rules();
    let main = source("src/main.rs", "mod cli;\nfn main() { cli::run(); }\n");
    let cli = source(
        "src/cli/request.rs",
        "use crate::cli::args::Args;\nuse tenantform::workflow::Workflow;\n\nfn f() { let _ = tenantform::provider::postgres::PostgresConfig::resolve; }\n",
    );
    let mut tree = toy_tree(main);
    tree.push(cli);
    let v = check(&rules, &tree);
    let found: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/cli/request.rs:4: tenantform::provider::postgres::PostgresConfig::resolve: main may not use provider"),
        "{found:?}"
    );
    assert!(!parts_of(&tree).contains("cli"));
}

/// The kinds of item the library must document, as they open a line after `pub `.
const DOCUMENTED_KINDS: &[&str] = &[
    "fn ",
    "async fn ",
    "const fn ",
    "unsafe fn ",
    "struct ",
    "enum ",
    "trait ",
    "const ",
    "static ",
    "type ",
];

/// An item of the library's public surface that has no doc comment.
#[derive(Debug, PartialEq)]
struct Undocumented {
    file: String,
    line: usize,
    item: String,
}

impl std::fmt::Display for Undocumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.item)
    }
}

/// For each line of `code` (already [`code_only`]), whether it is part of an attribute
/// (`#[...]`, which may span lines), so that a doc comment may sit above attributes.
fn attribute_lines(code: &str) -> Vec<bool> {
    let b = code.as_bytes();
    let mut line_of = Vec::with_capacity(b.len());
    let mut line = 0;
    for &c in b {
        line_of.push(line);
        if c == b'\n' {
            line += 1;
        }
    }
    let mut out = vec![false; line + 1];
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'#' && (b[i + 1] == b'[' || (b[i + 1] == b'!' && b.get(i + 2) == Some(&b'['))) {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let last = line_of[j.min(b.len() - 1)];
            for flag in &mut out[line_of[i]..=last] {
                *flag = true;
            }
            i = j;
        }
        i += 1;
    }
    out
}

/// Whether the item starting on line `at` of `text` has a doc comment: the nearest
/// line above it that is not part of an attribute is `///`, `/** ... */` or `#[doc`.
fn has_doc(lines: &[&str], attrs: &[bool], at: usize) -> bool {
    let mut j = at;
    while j > 0 {
        j -= 1;
        let above = lines[j].trim_start();
        if above.starts_with("///") || above.starts_with("#[doc") || above.ends_with("*/") {
            return true;
        }
        if !attrs.get(j).copied().unwrap_or(false) {
            return false;
        }
    }
    false
}

/// The variants of the enum whose body opens at byte `open` of `code`: the line each
/// starts on (its name, after any attributes), and the name.
fn enum_variants(code: &str, open: usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect_variant = true;
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' | b'(' | b'[' | b'<' if !(c == b'<' && depth == 1) => depth += 1,
            b'}' | b')' | b']' | b'>' if !(c == b'>' && depth == 1) => {
                // `->` and `=>` in a discriminant expression are not closers.
                if c == b'>' && i > 0 && (b[i - 1] == b'-' || b[i - 1] == b'=') {
                    i += 1;
                    continue;
                }
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_variant = true,
            b'#' if depth == 1 && expect_variant => {
                // Skip the attribute: it belongs to the variant that follows.
                let mut d = 0;
                let mut j = i + 1;
                while j < b.len() {
                    match b[j] {
                        b'[' => d += 1,
                        b']' => {
                            d -= 1;
                            if d == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i = j;
            }
            _ if depth == 1 && expect_variant && is_ident_byte(c) => {
                let name: String = b[i..]
                    .iter()
                    .take_while(|&&c| is_ident_byte(c))
                    .map(|&c| char::from(c))
                    .collect();
                let line = code[..i].matches('\n').count();
                i += name.len();
                out.push((line, name));
                expect_variant = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The methods of the trait whose body opens at byte `open` of `code`: the line of each
/// `fn` directly in the body, and the method's name.
fn trait_methods(code: &str, open: usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b'f' if depth == 1
                && code[i..].starts_with("fn ")
                && (i == 0 || !is_ident_byte(b[i - 1])) =>
            {
                let name: String = code[i + 3..]
                    .trim_start()
                    .chars()
                    .take_while(|&c| c.is_alphanumeric() || c == '_')
                    .collect();
                let line_start = code[..i].rfind('\n').map_or(0, |p| p + 1);
                out.push((code[..line_start].matches('\n').count(), name));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every public item of the library in `sources` that has no doc comment: `pub` items of
/// the kinds in [`DOCUMENTED_KINDS`], the variants of `pub` enums and the methods of
/// `pub` traits. Restricted
/// visibility (`pub(crate)`, `pub(super)`), test-only code and the binary's own modules
/// are left out; struct fields are not checked.
fn undocumented(sources: &[Source]) -> Vec<Undocumented> {
    let binary = binary_modules(sources);
    let test_files = test_only_files(sources);
    let mut out = Vec::new();
    for s in sources {
        if test_files.contains(&s.path)
            || s.path.ends_with("/tests.rs")
            || part_and_module(&s.path, &binary).0 == "main"
        {
            continue;
        }
        let code = code_only(&s.text);
        let test_blocks: Vec<(usize, usize)> = declared_modules_with_cfg(&code)
            .into_iter()
            .filter(|(_, _, test_only)| *test_only)
            .filter_map(|(_, block, _)| block)
            .collect();
        let lines: Vec<&str> = s.text.lines().collect();
        let attrs = attribute_lines(&code);
        let mut offset = 0;
        for (n, code_line) in code.split('\n').enumerate() {
            let start = offset;
            offset += code_line.len() + 1;
            if test_blocks.iter().any(|&(a, b)| a <= start && start <= b) {
                continue;
            }
            let Some(rest) = code_line.trim_start().strip_prefix("pub ") else {
                continue;
            };
            let Some(kind) = DOCUMENTED_KINDS.iter().find(|k| rest.starts_with(**k)) else {
                continue;
            };
            let name: String = rest[kind.len()..]
                .trim_start()
                .chars()
                .take_while(|&c| c.is_alphanumeric() || c == '_')
                .collect();
            if !has_doc(&lines, &attrs, n) {
                out.push(Undocumented {
                    file: s.path.clone(),
                    line: n + 1,
                    item: format!("pub {}{name}", kind),
                });
            }
            if *kind == "trait " {
                let indent = code_line.len() - code_line.trim_start().len();
                let Some(open) = code[start + indent..].find('{').map(|p| start + indent + p)
                else {
                    continue;
                };
                for (line, method) in trait_methods(&code, open) {
                    if !has_doc(&lines, &attrs, line) {
                        out.push(Undocumented {
                            file: s.path.clone(),
                            line: line + 1,
                            item: format!("method {name}::{method}"),
                        });
                    }
                }
            }
            if *kind == "enum " {
                let indent = code_line.len() - code_line.trim_start().len();
                let Some(open) = code[start + indent..].find('{').map(|p| start + indent + p)
                else {
                    continue;
                };
                for (line, variant) in enum_variants(&code, open) {
                    if !has_doc(&lines, &attrs, line) {
                        out.push(Undocumented {
                            file: s.path.clone(),
                            line: line + 1,
                            item: format!("variant {name}::{variant}"),
                        });
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_public_item_of_the_library_has_a_doc_comment() {
    let mut sources = Vec::new();
    sources_under(&repo().join("src"), &repo(), &mut sources);
    let missing = undocumented(&sources);
    assert!(
        missing.is_empty(),
        "{} public item(s) have no doc comment; say in a `///` line what each is for and what a caller can rely on:\n  {}",
        missing.len(),
        missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn an_undocumented_public_item_is_named_with_file_and_line_and_the_rest_pass() {
    let lib = source(
        "src/lib.rs",
        "//! The crate.\n\
         pub mod plan;\n\
         #[cfg(test)]\n\
         mod tests;\n",
    );
    let plan = source(
        "src/plan/mod.rs",
        "/// Documented, above its attributes.\n\
         #[derive(Debug)]\n\
         #[serde(\n    rename_all = \"snake_case\"\n)]\n\
         pub enum Action {\n\
         \x20   /// Documented.\n\
         \x20   #[serde(rename = \"no-op\")]\n\
         \x20   NoOp,\n\
         \x20   Create { at: Vec<u8> },\n\
         }\n\
         pub struct Bare;\n\
         // A plain comment is not a doc comment.\n\
         pub const LIMIT: usize = 3;\n\
         pub(crate) fn internal() {}\n\
         /// A trait.\n\
         pub trait Sink {\n\
         \x20   /// Documented.\n\
         \x20   fn put(&self);\n\
         \x20   fn take(&self) -> Option<u8> { None }\n\
         }\n\
         const S: &str = \"pub fn in_a_string() {}\";\n\
         #[cfg(test)]\n\
         mod tests {\n\
         \x20   pub fn helper() {}\n\
         }\n",
    );
    let tests = source("src/tests.rs", "pub fn helper() {}\n");
    let found: Vec<String> = undocumented(&[lib, plan, tests])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "src/plan/mod.rs:10: variant Action::Create",
            "src/plan/mod.rs:12: pub struct Bare",
            "src/plan/mod.rs:14: pub const LIMIT",
            "src/plan/mod.rs:20: method Sink::take",
        ]
    );
}
