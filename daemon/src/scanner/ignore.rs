//! `.stignore` patterns with Syncthing 1.19.2's meaning: which names in a
//! folder are ignored, and which ignored files may be deleted.
//!
//! Each pattern line expands the way Syncthing's `lib/ignore` expands it
//! (`p` → `p`, `**/p`, `p/**`, `**/p/**`; a trailing `/` → contents only) and
//! the first matching line decides. All expanded globs live in one
//! [`GlobSet`]; a name's winner is the matching glob with the lowest line.
//! Syncthing's matcher is gobwas/glob, where `**` touching other characters
//! (`te**st`) also crosses `/` and `a/**/b` needs at least one directory
//! between the slashes; globset differs on both, so such globs are rewritten
//! before compiling. Deliberate differences: includes may not leave the
//! folder root, re-including the root `.stignore` is a cycle error, and
//! pattern lines are NFC-normalised because our names are.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

const IGNORE_FILE: &str = ".stignore";
/// Each mid-component `**` doubles a line's globs; this keeps it bounded.
const MAX_VARIANTS: usize = 64;

/// A parsed set of ignore patterns for one folder.
#[derive(Clone, Debug)]
pub struct Ignores {
    set: GlobSet,
    /// Parallel to the globs in `set`.
    rules: Vec<Rule>,
    skip_ignored_dirs: bool,
    hash: [u8; 32],
}

/// What the patterns say about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Match {
    /// The name is ignored: not scanned, not synced.
    pub ignored: bool,
    /// Ignored and marked `(?d)`: may be deleted when it blocks removing a
    /// directory.
    pub deletable: bool,
}

/// Why an ignore file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// The folder's `.stignore` exists but could not be read.
    #[error("{p}: {1}", p = .0.display())]
    Read(PathBuf, io::Error),
    /// A line (1-based) of an ignore file is unusable.
    #[error("{p}:{1}: {2}", p = .0.display())]
    Line(PathBuf, usize, LineError),
    /// The patterns are valid one by one but too large to compile together.
    #[error("{p}: cannot compile patterns: {1}", p = .0.display())]
    Compile(PathBuf, String),
}

/// What is wrong with one line of an ignore file.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Empty after its prefixes, or not a valid glob: (line, reason).
    #[error("invalid pattern {0:?}: {1}")]
    BadPattern(String, String),
    /// `#include` without a file name.
    #[error("#include needs a file name")]
    IncludeMissingName,
    /// The included file does not exist.
    #[error("included file {p} not found", p = .0.display())]
    IncludeNotFound(PathBuf),
    /// The included file exists but could not be read.
    #[error("cannot read included file {p}: {1}", p = .0.display())]
    IncludeRead(PathBuf, io::Error),
    /// The include resolves outside the folder root.
    #[error("#include {0:?} leaves the folder root")]
    IncludeEscapesRoot(String),
    /// A file is included a second time (an include cycle, or a diamond).
    #[error("{p} is included more than once", p = .0.display())]
    IncludeCycle(PathBuf),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    line: usize,
    result: Match,
}

/// Where a line is: file, 1-based number, trimmed text.
type At<'a> = (&'a Path, usize, &'a str);

impl Ignores {
    /// A set that ignores nothing.
    pub fn empty() -> Self {
        Ignores {
            set: GlobSet::empty(),
            rules: Vec::new(),
            skip_ignored_dirs: true,
            hash: Sha256::digest(b"").into(),
        }
    }

    /// Reads `<root>/.stignore` (missing file => empty set), following
    /// `#include` relative to the including file's directory, inside root
    /// only (an include that escapes the folder root, or an include cycle,
    /// is an error).
    pub fn load(root: &Path) -> Result<Self, IgnoreError> {
        let path = root.join(IGNORE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes), root),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::empty()),
            Err(e) => Err(IgnoreError::Read(path, e)),
        }
    }

    /// Parses text as if it were `<root>/.stignore` (includes resolved under root).
    pub fn parse(text: &str, root: &Path) -> Result<Self, IgnoreError> {
        let canon_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let mut parser = Parser {
            root: root.to_path_buf(),
            loaded: HashSet::from([canon_root.join(IGNORE_FILE)]),
            canon_root,
            seen_lines: HashSet::new(),
            line_count: 0,
            hasher: Sha256::new(),
            skip_dirs: true,
            previous: String::new(),
            globs: GlobSetBuilder::new(),
            rules: Vec::new(),
        };
        let file = root.join(IGNORE_FILE);
        parser.parse_file(&file, &[], text)?;
        let set = parser
            .globs
            .build()
            .map_err(|e| IgnoreError::Compile(file, e.to_string()))?;
        Ok(Ignores {
            set,
            rules: parser.rules,
            skip_ignored_dirs: parser.skip_dirs,
            hash: parser.hasher.finalize().into(),
        })
    }

    /// `name` is a canonical folder-relative name: '/'-separated, no leading '/', NFC.
    pub fn matches(&self, name: &str) -> Match {
        if self.rules.is_empty() || name.is_empty() || name == "." {
            return Match::default();
        }
        self.set
            .matches(name)
            .into_iter()
            .filter_map(|i| self.rules.get(i))
            .min_by_key(|r| r.line)
            .map(|r| r.result)
            .unwrap_or_default()
    }

    /// True when a directory that is ignored can be skipped entirely by the
    /// walker. Syncthing's rule: every negated pattern is a top-level
    /// anchored name (`!/foo`, `!/foo*`), which cannot re-include anything
    /// beneath an ignored directory.
    pub fn can_skip_ignored_dirs(&self) -> bool {
        self.skip_ignored_dirs
    }

    /// SHA-256 over the normalised pattern lines (including included files'
    /// lines), so the scanner can tell when patterns changed.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// True when no pattern is in effect.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

struct Parser {
    root: PathBuf,
    canon_root: PathBuf,
    /// Syncthing skips a line whose exact text it already saw, in any file.
    seen_lines: HashSet<String>,
    loaded: HashSet<PathBuf>,
    line_count: usize,
    /// Over the expanded patterns, like Syncthing's Matcher.Hash().
    hasher: Sha256,
    skip_dirs: bool,
    /// The previous expanded pattern, for Syncthing's skip rule.
    previous: String,
    globs: GlobSetBuilder,
    rules: Vec<Rule>,
}

impl Parser {
    /// `dir` is the folder-relative directory of `file`, for its includes.
    fn parse_file(&mut self, file: &Path, dir: &[String], text: &str) -> Result<(), IgnoreError> {
        for (idx, raw) in text.lines().enumerate() {
            let line: String = raw.trim().nfc().collect();
            let at = (file, idx + 1, line.as_str());
            if !self.seen_lines.insert(line.clone()) || line.is_empty() || line.starts_with("//") {
                continue;
            }
            if line.starts_with("#include") {
                self.include(at, dir)?;
                continue;
            }
            if line.ends_with("/**") {
                self.add(&line, at)?;
            } else if line.ends_with('/') {
                // Syncthing: `dir/` is the directory's contents, not the directory.
                self.add(&format!("{line}**"), at)?;
            } else {
                self.add(&line, at)?;
                self.add(&format!("{line}/**"), at)?;
            }
            self.line_count += 1;
        }
        Ok(())
    }

    fn include(&mut self, (file, line, text): At<'_>, dir: &[String]) -> Result<(), IgnoreError> {
        let err = |kind| IgnoreError::Line(file.to_path_buf(), line, kind);
        let name = text.split_once(' ').map_or("", |(_, rest)| rest.trim());
        if name.is_empty() {
            return Err(err(LineError::IncludeMissingName));
        }
        let escapes = || err(LineError::IncludeEscapesRoot(name.to_owned()));
        // Lexically, like Go's filepath.Join (a leading '/' is still relative).
        let mut comps = dir.to_vec();
        for comp in name.split('/') {
            match comp {
                "" | "." => {}
                ".." => comps.pop().map(drop).ok_or_else(escapes)?,
                c => comps.push(c.to_owned()),
            }
        }
        let include = comps.iter().fold(self.root.clone(), |p, c| p.join(c));
        let read_err = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => err(LineError::IncludeNotFound(include.clone())),
            _ => err(LineError::IncludeRead(include.clone(), e)),
        };
        // Canonical, so a symlink cannot lead out and one file has one name.
        let canon = include.canonicalize().map_err(read_err)?;
        if !canon.starts_with(&self.canon_root) {
            return Err(escapes());
        }
        if !self.loaded.insert(canon.clone()) {
            return Err(err(LineError::IncludeCycle(include)));
        }
        let bytes = std::fs::read(&canon).map_err(read_err)?;
        comps.pop();
        self.parse_file(&include, &comps, &String::from_utf8_lossy(&bytes))
    }

    /// One Syncthing `parseLine`: prefixes, then the pattern at the root and
    /// (unless anchored) at any depth.
    fn add(&mut self, spec: &str, (file, line, text): At<'_>) -> Result<(), IgnoreError> {
        let bad = |reason: String| {
            IgnoreError::Line(
                file.to_path_buf(),
                line,
                LineError::BadPattern(text.into(), reason),
            )
        };
        let (mut negated, mut fold, mut deletable, mut rest) = (false, false, false, spec);
        loop {
            if let (false, Some(r)) = (negated, rest.strip_prefix('!')) {
                (negated, rest) = (true, r);
            } else if let (false, Some(r)) = (fold, rest.strip_prefix("(?i)")) {
                (fold, rest) = (true, r);
            } else if let (false, Some(r)) = (deletable, rest.strip_prefix("(?d)")) {
                (deletable, rest) = (true, r);
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return Err(bad("missing pattern".into()));
        }
        let pat = if fold {
            rest.to_lowercase()
        } else {
            rest.to_owned()
        };
        let texts = if pat.starts_with('/') {
            vec![pat]
        } else if let Some(bare) = pat.strip_prefix("**/") {
            vec![pat.clone(), bare.to_owned()]
        } else {
            vec![pat.clone(), format!("**/{pat}")]
        };
        let result = Match {
            ignored: !negated,
            deletable: !negated && deletable,
        };
        for text in texts {
            let source = text.strip_prefix('/').unwrap_or(&text);
            for variant in gobwas_stars(source).map_err(|e| bad(e.into()))? {
                let glob = GlobBuilder::new(&variant)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .case_insensitive(fold)
                    .empty_alternates(true)
                    .build()
                    .map_err(|e| bad(e.kind().to_string()))?;
                self.globs.add(glob);
                self.rules.push(Rule {
                    line: self.line_count,
                    result,
                });
            }
            self.note(&text, [deletable, fold, negated]);
        }
        Ok(())
    }

    /// Feeds one expanded pattern, with its `(?d)`, `(?i)` and `!` flags,
    /// to the hash and to Syncthing's `skipIgnoredDirs` rule.
    fn note(&mut self, text: &str, flags: [bool; 3]) {
        // Syncthing's Pattern.String() spelling, so the digest equals its Hash().
        for (on, prefix) in flags.into_iter().zip(["(?d)", "(?i)", "!"]) {
            if on {
                self.hasher.update(prefix);
            }
        }
        self.hasher.update(format!("{text}\n"));
        // `x/**` right after `x` was added by the expansion, not written.
        let prev = self.previous.as_str();
        if !prev.is_empty() && text.strip_prefix(prev).is_some_and(|t| t.len() == 3) {
            return;
        }
        // A negation can only be skipped past when it names a top-level entry.
        let top_level = |rest: &str| {
            !rest.contains('/') && !text.strip_suffix("**").unwrap_or(text).contains("**")
        };
        self.skip_dirs &= !flags[2] || text.strip_prefix('/').is_some_and(top_level);
        self.previous = text.to_owned();
    }
}

/// Rewrites `**` into globs globset reads the way gobwas/glob reads the
/// original: `**` next to other characters may also span directories (it
/// forks into a `*` variant and a `*/**/*` variant), and a mid-pattern
/// `/**/` needs at least one directory.
fn gobwas_stars(pat: &str) -> Result<Vec<String>, &'static str> {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = vec![String::new()];
    let push = |out: &mut Vec<String>, s: &str| out.iter_mut().for_each(|o| o.push_str(s));
    let (mut i, mut in_class) = (0, false);
    while let Some(&c) = chars.get(i) {
        i += 1;
        if in_class || c != '*' {
            let mut s = c.to_string();
            if in_class {
                in_class = c != ']';
            } else if c == '[' {
                in_class = true;
                // A leading `!`/`^` and then `]` belong to the class body.
                for lead in [&['!', '^'][..], &[']']] {
                    if let Some(c) = chars.get(i).filter(|c| lead.contains(c)) {
                        (s, i) = (format!("{s}{c}"), i + 1);
                    }
                }
            } else if c == '\\' {
                s.extend(chars.get(i));
                i += 1;
            }
            push(&mut out, &s);
            continue;
        }
        let start = i - 1;
        while chars.get(i) == Some(&'*') {
            i += 1;
        }
        if i - start == 1 {
            push(&mut out, "*");
            continue;
        }
        let left = start == 0 || chars.get(start - 1) == Some(&'/');
        let right = chars.get(i).is_none_or(|&c| c == '/');
        if left && right {
            let mid = start > 0 && i < chars.len();
            push(&mut out, if mid { "*/**" } else { "**" });
        } else {
            let (l, r) = (if left { "" } else { "*/" }, if right { "" } else { "/*" });
            let deep = format!("{l}**{r}");
            out = out
                .into_iter()
                .flat_map(|s| [format!("{s}*"), format!("{s}{deep}")])
                .collect();
            if out.len() > MAX_VARIANTS {
                return Err("too many `**` inside path components");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ign(text: &str) -> Ignores {
        Ignores::parse(text, Path::new("/r")).expect("patterns parse")
    }

    fn err(text: &str, root: &Path) -> (usize, LineError, String) {
        let e = Ignores::parse(text, root).expect_err("should be rejected");
        let msg = e.to_string();
        match e {
            IgnoreError::Line(_, line, kind) => (line, kind, msg),
            other => panic!("{text:?}: expected a line error, got {other:?}"),
        }
    }

    const IGNORED: Match = Match {
        ignored: true,
        deletable: false,
    };
    const DELETABLE: Match = Match {
        ignored: true,
        deletable: true,
    };

    /// `yes` and `no` are space-separated names.
    fn check(text: &str, yes: &str, no: &str) {
        let i = ign(text);
        for name in yes.split_whitespace() {
            assert!(i.matches(name).ignored, "{text:?} should ignore {name:?}");
        }
        for name in no.split_whitespace() {
            assert!(
                !i.matches(name).ignored,
                "{text:?} must not ignore {name:?}"
            );
        }
    }

    #[test]
    fn glob_syntax() {
        check("foo", "foo a/foo a/b/foo foo/x/y", "foobar a/xfoo fo");
        check("/a", "a a/x/y", "b/a ab");
        check("te*st", "test sub/telerest", "tele/rest");
        check("*.txt", "a.txt d/b.txt", "a.txt.bak");
        check("te**st", "test tele/sub/dir/rest x/te/st", "tex");
        check("/a/**/b", "a/x/b a/x/y/b a/x/b/c", "a/b z/a/x/b");
        check("**/c", "c x/y/c", "cc");
        check("te??st", "tebest", "teb/st test");
        check("[a-c]x\n[!a]y", "ax cx by", "dx ay");
        check("{banana,pineapple}", "banana d/pineapple", "apple");
        check("\\*lit\n\\{a\\}\n\\[z", "*lit {a} [z", "xlit a z");
    }

    #[test]
    fn directory_patterns() {
        check("dir", "dir dir/x/y s/dir/x", "dirt");
        // Syncthing turns `dir/` into `dir/**`: the contents, not the directory.
        check("dir/", "dir/x s/dir/x/y", "dir");
        check("/d/**", "d/x", "d s/d/x");
    }

    #[test]
    fn first_matching_line_wins() {
        check("!keep.txt\n*.txt", "other.txt", "keep.txt d/keep.txt");
        check("*.txt\n!keep.txt", "other.txt keep.txt", "");
        check("!/d/keep\n/d", "d d/other", "d/keep d/keep/x");
        // Prefixes are read once each; a second `!` belongs to the pattern.
        check("!!x\n*", "y", "!x");
    }

    #[test]
    fn prefixes() {
        check("(?i)Foo", "FOO d/foo fOo/x", "food");
        check("Foo", "Foo", "FOO");
        check("!(?i)Pic*.png\n*.png", "other.png", "pic1.PNG PIC2.png");
        let i = ign("(?d)thumbs.db\nplain\n!(?d)kept\n*");
        assert_eq!(i.matches("d/thumbs.db"), DELETABLE);
        assert_eq!(i.matches("plain"), IGNORED);
        assert_eq!(i.matches("kept"), Match::default());
        let any_order = ign("(?d)(?i)!X\n(?i)(?d)Y");
        assert_eq!(any_order.matches("x"), Match::default());
        assert_eq!(any_order.matches("y"), DELETABLE);
    }

    #[test]
    fn comments_blanks_and_unknown_hash_lines() {
        // Syncthing has no directives but `#include`: `#foo` is a pattern.
        check("// c\n\n   \n  foo  \r\n#foo", "foo #foo", "c");
        assert!(ign("// only a comment\n\n").is_empty());
        assert!(!ign("x").is_empty());
        assert!(!Ignores::empty().matches("x").ignored);
    }

    #[test]
    fn errors_name_file_and_line() {
        let (line, kind, msg) = err("ok\n[", Path::new("/r"));
        assert!(
            matches!((line, kind), (2, LineError::BadPattern(..))),
            "{msg}"
        );
        assert!(
            msg.starts_with("/r/.stignore:2: invalid pattern \"[\""),
            "{msg}"
        );
        let (_, _, msg) = err("a\nb\n!(?i)", Path::new("/r"));
        assert_eq!(
            msg,
            "/r/.stignore:3: invalid pattern \"!(?i)\": missing pattern"
        );
        let (line, kind, _) = err("#include", Path::new("/r"));
        assert!(matches!((line, kind), (1, LineError::IncludeMissingName)));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn includes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let none = Ignores::load(root).expect("no .stignore is fine");
        assert!(none.is_empty());
        write(&root.join(".stignore"), "#include sub/more\nkeep\n");
        // Relative to the including file; patterns stay rooted at the folder.
        write(&root.join("sub/more"), "!keep\n#include deeper\n/top\n");
        write(&root.join("sub/deeper"), "*.log\n");
        let i = Ignores::load(root).expect("loads");
        assert!(!i.matches("keep").ignored, "the included line comes first");
        assert!(i.matches("x/a.log").ignored && i.matches("top").ignored);
        assert!(!i.matches("sub/top").ignored);

        for text in ["#include ../outside", "#include sub/../../x"] {
            let (line, kind, msg) = err(text, root);
            assert!(
                matches!((line, kind), (1, LineError::IncludeEscapesRoot(_))),
                "{msg}"
            );
        }
        let (line, kind, msg) = err("a\n#include nope.txt", root);
        assert!(
            matches!((line, kind), (2, LineError::IncludeNotFound(_))),
            "{msg}"
        );
        assert!(msg.contains(".stignore:2: included file") && msg.contains("nope.txt"));

        write(&root.join("c/a"), "#include b\n");
        write(&root.join("c/b"), "#include ./a\n");
        write(&root.join("c/root"), "#include ../.stignore\n");
        for (text, at) in [("#include c/a", "c/b:1:"), ("#include c/root", "c/root:1:")] {
            let (_, kind, msg) = err(text, root);
            assert!(
                matches!(kind, LineError::IncludeCycle(_)) && msg.contains(at),
                "{msg}"
            );
        }
    }

    #[test]
    fn skipping_ignored_dirs() {
        assert!(Ignores::empty().can_skip_ignored_dirs());
        assert!(ign("foo\n*.bak\n/x/y/**").can_skip_ignored_dirs());
        assert!(!ign("!keep.txt\n*").can_skip_ignored_dirs());
        assert!(!ign("!/top/sub\n*").can_skip_ignored_dirs());
        assert!(!ign("!/top/\n*").can_skip_ignored_dirs());
        // Syncthing's documented exception: top-level anchored negations.
        assert!(ign("!/top\n!/a*\n*").can_skip_ignored_dirs());
    }

    #[test]
    fn hash_tracks_patterns() {
        let hash = |text| ign(text).hash();
        assert_eq!(hash("foo\n*.txt"), hash("// note\nfoo\n\n  *.txt  "));
        assert_ne!(hash("foo\n*.txt"), hash("foo\n*.txt\n!x"));
        assert_ne!(hash("a\nb"), hash("b\na"));
        assert_eq!(Ignores::empty().hash(), hash("// nothing"));
        // The same digest as Syncthing's Matcher.Hash() over its expanded patterns.
        let expanded = "(?d)!foo\n(?d)!**/foo\n(?d)!foo/**\n(?d)!**/foo/**\n";
        assert_eq!(hash("!(?d)foo"), <[u8; 32]>::from(Sha256::digest(expanded)));
    }
}
