//! File names as they travel in BEP: relative, `/`-separated, NFC, and
//! canonical. A [`Name`] can only be built from a string that passes every
//! check, so code that holds one never re-validates (and never joins a
//! peer's `..` onto a folder root).

use std::fmt;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// A canonical folder-relative name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty, `.` or `..`.
    #[error("empty or dot name {0:?}")]
    Empty(String),
    /// Starts with `/`.
    #[error("absolute name {0:?}")]
    Absolute(String),
    /// Has an empty, `.` or `..` component, or a trailing `/`.
    #[error("name {0:?} is not canonical (empty, `.` or `..` component)")]
    NotCanonical(String),
    /// Holds a NUL, which no file system can store.
    #[error("name {0:?} holds a NUL character")]
    Character(String),
    /// Not in Unicode normalisation form C.
    #[error("name {0:?} is not NFC")]
    NotNfc(String),
}

impl Name {
    /// Checks a name received from a peer.
    pub fn parse(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        if s.is_empty() || s == "." || s == ".." {
            return Err(NameError::Empty(s));
        }
        if s.starts_with('/') {
            return Err(NameError::Absolute(s));
        }
        if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(NameError::NotCanonical(s));
        }
        if s.contains('\0') {
            return Err(NameError::Character(s));
        }
        match is_nfc_quick(s.chars()) {
            IsNormalized::Yes => {}
            _ if s.nfc().eq(s.chars()) => {}
            _ => return Err(NameError::NotNfc(s)),
        }
        Ok(Self(s))
    }

    /// Normalises a locally found name (any Unicode form) and checks it.
    pub fn from_local(s: &str) -> Result<Self, NameError> {
        Self::parse(s.nfc().collect::<String>())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The name of the containing directory, if any.
    pub fn parent(&self) -> Option<Name> {
        self.0.rsplit_once('/').map(|(p, _)| Name(p.to_string()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_names() {
        for s in [
            "a",
            "a/b",
            "dir/.hidden",
            "x/y/z.txt",
            "…",
            "a b/c",
            "..a",
            "a..",
        ] {
            assert_eq!(Name::parse(s).map(|n| n.to_string()), Ok(s.to_string()));
        }
    }

    #[test]
    fn refuses_escapes_and_non_canonical_names() {
        for s in [
            "", ".", "..", "/a", "../a", "a/../b", "a/..", "a//b", "a/", "a/./b", "./a", "a\0b",
        ] {
            assert!(Name::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn nfc_only_on_the_wire_but_local_names_are_normalised() {
        let nfd = "e\u{301}.txt";
        let nfc = "\u{e9}.txt";
        assert!(matches!(Name::parse(nfd), Err(NameError::NotNfc(_))));
        assert_eq!(Name::from_local(nfd).expect("normalised").as_str(), nfc);
        assert_eq!(Name::parse(nfc).expect("nfc").as_str(), nfc);
    }

    #[test]
    fn parent_and_file_name() {
        let n = Name::parse("a/b/c.txt").expect("ok");
        assert_eq!(n.file_name(), "c.txt");
        assert_eq!(n.parent().map(String::from).as_deref(), Some("a/b"));
        assert_eq!(Name::parse("top").expect("ok").parent(), None);
        assert_eq!(n.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
    }

    #[test]
    fn a_backslash_is_an_ordinary_character() {
        let n = Name::parse("a\\b").expect("accepted, as Syncthing on Linux does");
        assert_eq!(n.as_str(), "a\\b");
        assert_eq!(n.parent(), None, "not a separator");
    }
}
