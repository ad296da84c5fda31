//! Device IDs: the SHA-256 of a device's certificate, shown in Syncthing's
//! base32 form with Luhn-32 check characters (`syncthing-device-ids(7)`).

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A device's identity: SHA-256 over the DER of its TLS certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 32]);

/// The first 8 bytes of a device ID as a big-endian integer: the device's
/// key in version vectors and `FileInfo.modified_by`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct ShortId(pub u64);

/// Why a device ID string or byte slice was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceIdError {
    /// Not 52 or 56 base32 characters once dashes and spaces are dropped.
    #[error("a device ID has 56 base32 characters (with dashes: 63); got {0}")]
    Length(usize),
    /// A character outside the base32 alphabet.
    #[error("{0:?} is not a base32 character (A-Z, 2-7)")]
    Character(char),
    /// A check character does not match its group.
    #[error("check character {group} of 4 is wrong: is the ID mistyped?")]
    Check {
        /// Which of the four groups (1-based) failed.
        group: usize,
    },
    /// Raw bytes of the wrong length (a wire ID is 32 bytes).
    #[error("a raw device ID is 32 bytes; got {0}")]
    RawLength(usize),
}

impl DeviceId {
    /// The ID of the certificate whose DER encoding is `cert_der`.
    pub fn from_cert_der(cert_der: &[u8]) -> Self {
        Self(Sha256::digest(cert_der).into())
    }

    /// Wraps 32 raw bytes (as carried on the wire).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The short ID used in version vectors.
    pub fn short(&self) -> ShortId {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        ShortId(u64::from_be_bytes(b))
    }
}

impl TryFrom<&[u8]> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| DeviceIdError::RawLength(bytes.len()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = BASE32_NOPAD.encode(&self.0);
        let mut with_checks = String::with_capacity(56);
        for group in body.as_bytes().chunks(13) {
            with_checks.push_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?);
            with_checks.push(luhn32(group) as char);
        }
        for (i, chunk) in with_checks.as_bytes().chunks(7).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    /// Accepts what Syncthing accepts: any case, with or without dashes and
    /// spaces, `0`/`1`/`8` typed for `O`/`I`/`B`, trailing `=` padding, and
    /// the legacy 52-character form without check characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = Vec::with_capacity(56);
        for c in s.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '=' => continue,
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                c => c,
            };
            if value_of(c).is_none() {
                return Err(DeviceIdError::Character(c));
            }
            chars.push(c as u8);
        }
        let body: Vec<u8> = match chars.len() {
            56 => {
                let mut body = Vec::with_capacity(52);
                for (i, group) in chars.chunks(14).enumerate() {
                    let (data, check) = group.split_at(13);
                    if luhn32(data) != check[0] {
                        return Err(DeviceIdError::Check { group: i + 1 });
                    }
                    body.extend_from_slice(data);
                }
                body
            }
            52 => chars,
            n => return Err(DeviceIdError::Length(n)),
        };
        let raw = BASE32_NOPAD
            .decode(&body)
            .map_err(|_| DeviceIdError::Length(body.len()))?;
        DeviceId::try_from(raw.as_slice())
    }
}

impl fmt::Display for ShortId {
    /// The first dash group of the device ID: used in conflict file names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = BASE32_NOPAD.encode(&self.0.to_be_bytes());
        f.write_str(&s[..7])
    }
}

/// A base32 character's value (`A`–`Z` 0–25, `2`–`7` 26–31): arithmetic,
/// not a search of [`ALPHABET`] (a discovery server parses an ID per
/// lookup).
fn value_of(c: char) -> Option<u8> {
    match c {
        'A'..='Z' => Some(c as u8 - b'A'),
        '2'..='7' => Some(c as u8 - b'2' + 26),
        _ => None,
    }
}

/// Syncthing's "Luhn mod 32" check character (not textbook Luhn: the factor
/// starts at 1 on the first character).
fn luhn32(group: &[u8]) -> u8 {
    let mut factor = 1;
    let mut sum = 0u32;
    for &c in group {
        let cp = value_of(c as char).unwrap_or(0) as u32;
        let a = factor * cp;
        factor = if factor == 2 { 1 } else { 2 };
        sum += a / 32 + a % 32;
    }
    ALPHABET[((32 - sum % 32) % 32) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_EXAMPLE: &str = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";

    #[test]
    fn doc_example_round_trips() {
        let id: DeviceId = DOC_EXAMPLE.parse().expect("valid");
        assert_eq!(id.to_string(), DOC_EXAMPLE);
    }

    #[test]
    fn hash_example_from_the_facts_sheet() {
        let hex = "6f4f2581a17aa3842383d9ec116075b36838547f5787d5af8b251f9f67210cdc";
        let raw: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex"))
            .collect();
        let id = DeviceId::try_from(raw.as_slice()).expect("32 bytes");
        assert_eq!(
            id.to_string(),
            "N5HSLAN-BPKRYIF-I4D3HWB-CYDVWN7-UDQVD7K-6D5LL4H-LEUPZ6Z-ZBBTOAH"
        );
        assert_eq!(id.short(), ShortId(0x6f4f2581a17aa384));
        assert_eq!(id.short().to_string(), "N5HSLAN");
    }

    #[test]
    fn accepts_syncthing_spellings() {
        let want: DeviceId = DOC_EXAMPLE.parse().expect("valid");
        for s in [
            DOC_EXAMPLE.to_lowercase(),
            DOC_EXAMPLE.replace('-', ""),
            DOC_EXAMPLE.replace('-', " "),
            // 0/1/8 typed for O/I/B.
            DOC_EXAMPLE
                .replace('B', "8")
                .replace('O', "0")
                .replace('I', "1"),
            // Legacy form: 52 characters, no check characters.
            "MFZWI3DBONSGYYLTMRWGC43ENRQXGZDMMFZWI3DBONSGYYLTMRWA".to_string(),
        ] {
            assert_eq!(s.parse::<DeviceId>(), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_a_wrong_check_character() {
        // Last character D -> E breaks group 4's check.
        let bad = DOC_EXAMPLE.replace("LTMRWAD", "LTMRWAE");
        assert_eq!(
            bad.parse::<DeviceId>(),
            Err(DeviceIdError::Check { group: 4 })
        );
        let err = bad.parse::<DeviceId>().expect_err("bad").to_string();
        assert!(err.contains("check character 4"), "{err}");
    }

    #[test]
    fn rejects_bad_lengths_and_characters() {
        assert_eq!("ABC".parse::<DeviceId>(), Err(DeviceIdError::Length(3)));
        assert!(matches!(
            "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWA!".parse::<DeviceId>(),
            Err(DeviceIdError::Character('!'))
        ));
        assert_eq!(
            DeviceId::try_from(&[0u8; 31][..]),
            Err(DeviceIdError::RawLength(31))
        );
    }

    #[test]
    fn every_single_character_typo_is_caught_or_harmless() {
        // Luhn-32 catches every single substitution within a group.
        let s: Vec<char> = DOC_EXAMPLE.chars().collect();
        for i in 0..s.len() {
            if s[i] == '-' {
                continue;
            }
            for &c in ALPHABET {
                let c = c as char;
                if c == s[i] || "OIB".contains(c) && "018".contains(s[i]) {
                    continue;
                }
                let mut t = s.clone();
                t[i] = c;
                let t: String = t.into_iter().collect();
                assert!(t.parse::<DeviceId>().is_err(), "{t} accepted");
            }
        }
    }
}
