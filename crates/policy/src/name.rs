//! Host names as sluice compares them: one normalised spelling per destination.
//!
//! Every name that reaches a decision — SNI, CONNECT authority, `Host` header, a pattern in a
//! policy or catalog — goes through [`Host::parse`], so that two spellings of one destination can
//! never be told apart by a rule (security matrix PE-06, PE-07, PE-08, PE-17):
//!
//! * ASCII is lowercased; exactly one trailing dot (the DNS root) is dropped; empty labels
//!   (`a..b`, `.a`, `a..`) are errors, never silently repaired.
//! * Internationalised names are converted to A-labels with UTS #46 ToASCII, non-transitional
//!   processing (`faß.test` → `xn--fa-hia.test`, not `fass.test`), as browsers do; A-labels
//!   given as input are validated by the same processing and kept.
//! * Labels hold letters, digits, `-` and `_` (RFC 1035 §2.3.1 "LDH", plus `_`, which real names
//!   use and which must be treated the same for SNI, CONNECT and rules: PE-08); at most 63
//!   octets per label and 253 for the whole name (RFC 1035 §2.3.4).
//! * Anything a browser or resolver would read as an IPv4 address — `127.1`, `2130706433`,
//!   `0x7f000001`, `0177.0.0.1` — becomes [`Host::Ip`] in canonical form (WHATWG URL Standard,
//!   "IPv4 parser"), or an error; it is never a [`DomainName`] that a destination check could
//!   miss. IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) become the IPv4 address for the same
//!   reason.
//!
//! This module does not split off ports, decode percent-escapes or resolve anything; callers
//! hand it the bare host.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

#[cfg(test)]
mod tests;

/// Longest name in text form without the trailing dot: 255 octets on the wire
/// (RFC 1035 §2.3.4) are 253 characters of text.
pub const MAX_NAME_LEN: usize = 253;

/// Longest label, in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Inputs longer than this are refused before any IDNA work, which bounds what a hostile SNI or
/// CONNECT line can cost. UTS #46 mapping can shrink text (ignored code points vanish), so this
/// is generous rather than exact: 4 bytes of UTF-8 per character of the longest name, plus room.
const MAX_INPUT_LEN: usize = 1024;

/// A normalised DNS name: ASCII lowercase A-labels separated by single dots, no trailing dot,
/// each label 1..=63 octets of `[a-z0-9_-]`, at most 253 octets in all, and never something a
/// browser would read as an IPv4 address.
///
/// Two `DomainName`s are equal exactly when they name the same DNS node, so comparing, hashing
/// and ordering the text is enough.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(Box<str>);

/// A destination host: a domain name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A (normalised) domain name.
    Domain(DomainName),
    /// An IP address. IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
}

/// Why a string is not an acceptable host name.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Nothing left after removing one trailing dot.
    #[error("host name is empty")]
    Empty,
    /// More than 253 characters (RFC 1035 §2.3.4), or an absurdly long input.
    #[error("host name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// A leading dot, two dots in a row, or more than one trailing dot.
    #[error("host name has an empty label (a leading dot, `..`, or more than one trailing dot)")]
    EmptyLabel,
    /// A label longer than 63 octets (RFC 1035 §2.3.4).
    #[error("a label of the host name is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    /// A character that cannot appear in a host name (only letters, digits, `-`, `_`, `.`).
    #[error("character {0:?} is not allowed in a host name")]
    InvalidChar(char),
    /// UTS #46 processing refused the name (bad Punycode in an `xn--` label, disallowed code
    /// points, bidi rule violations, …).
    #[error("not a valid internationalised domain name (UTS #46)")]
    Idna,
    /// The name ends in a number, so browsers read it as IPv4, but it is no valid IPv4 address
    /// (`1.2.3.256`, `foo.123`, `1.2.3.4.5`).
    #[error("host ends in a number but is not a valid IPv4 address")]
    InvalidIpv4,
    /// Brackets or a colon, but no valid IPv6 address (zone identifiers are not accepted).
    #[error("not a valid IPv6 address")]
    InvalidIpv6,
    /// A domain name was required and an IP address was given.
    #[error("expected a domain name, found the IP address {0}")]
    NotADomain(IpAddr),
    /// [`Host::parse_ascii`] was given non-ASCII text (TLS SNI must be ASCII, RFC 6066 §3).
    #[error("host name contains non-ASCII characters")]
    NonAscii,
}

// === impl NameError ===

impl NameError {
    /// A short stable code for access-log `reason` fields and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::EmptyLabel => "empty_label",
            Self::LabelTooLong => "label_too_long",
            Self::InvalidChar(_) => "invalid_char",
            Self::Idna => "idna",
            Self::InvalidIpv4 => "invalid_ipv4",
            Self::InvalidIpv6 => "invalid_ipv6",
            Self::NotADomain(_) => "not_a_domain",
            Self::NonAscii => "non_ascii",
        }
    }
}

// === impl Host ===

impl Host {
    /// Parses and normalises a bare host (no port, no userinfo): a domain name, an IPv4 address
    /// in any spelling a browser accepts, or an IPv6 address with or without brackets.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(NameError::TooLong);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(NameError::InvalidIpv6)?;
            return parse_ipv6(inner);
        }
        // Only IPv6 literals contain a colon here: splitting off a port is the caller's job.
        if s.contains(':') {
            return parse_ipv6(s);
        }
        let ascii = to_ascii(s)?;
        // The WHATWG host parser runs the IPv4 check on the ASCII form, so `１２７.１`
        // (full-width digits) is an address too.
        if ends_in_a_number(&ascii) {
            return parse_ipv4(&ascii).map(|ip| Self::Ip(IpAddr::V4(ip)));
        }
        DomainName::from_ascii(ascii).map(Self::Domain)
    }

    /// Like [`Host::parse`], but refuses non-ASCII input: for TLS SNI, which RFC 6066 §3
    /// defines as ASCII, so a raw U-label there is malformed rather than something to map
    /// (PE-07).
    pub fn parse_ascii(s: &str) -> Result<Self, NameError> {
        if !s.is_ascii() {
            return Err(NameError::NonAscii);
        }
        Self::parse(s)
    }

    /// The domain name, if this is one.
    pub fn as_domain(&self) -> Option<&DomainName> {
        match self {
            Self::Domain(d) => Some(d),
            Self::Ip(_) => None,
        }
    }

    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Domain(_) => None,
            Self::Ip(ip) => Some(*ip),
        }
    }
}

impl fmt::Display for Host {
    /// Domain names as normalised; IPv6 without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d.as_str()),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

impl FromStr for Host {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Host {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl DomainName ===

impl DomainName {
    /// Parses and normalises a domain name; IP addresses (in any spelling) are an error.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        match Host::parse(s)? {
            Host::Domain(d) => Ok(d),
            Host::Ip(ip) => Err(NameError::NotADomain(ip)),
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels, leftmost first (`www`, `example`, `com`).
    pub fn labels(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.0.split('.')
    }

    /// The name without its leftmost label, or `None` for a single-label name.
    pub fn parent(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, parent)| parent)
    }

    /// Whether `self` is `domain` or a subdomain of it, comparing at label boundaries:
    /// `a.example.com` is under `example.com`, `badexample.com` is not.
    pub fn is_within(&self, domain: &Self) -> bool {
        is_within(self.as_str(), domain.as_str())
    }

    /// Wraps text that is already normalised, such as a key of a compiled set that came from a
    /// `DomainName`. Not public: a `DomainName` must only ever be made by `parse`.
    pub(crate) fn from_normalised(s: &str) -> Self {
        debug_assert!(matches!(Host::parse(s), Ok(Host::Domain(ref d)) if d.as_str() == s));
        Self(s.into())
    }

    /// Gives up the text, for sets that key on it without another allocation.
    pub(crate) fn into_boxed_str(self) -> Box<str> {
        self.0
    }

    /// The structural checks, on text that is already ASCII lowercase over `[a-z0-9_.-]`.
    fn from_ascii(ascii: Cow<'_, str>) -> Result<Self, NameError> {
        // Exactly one trailing dot is the (implicit) root label; a second one leaves an empty
        // label below, which is refused.
        let name = ascii.strip_suffix('.').unwrap_or(&ascii);
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
        }
        let len = name.len();
        let mut owned = ascii.into_owned();
        owned.truncate(len);
        Ok(Self(owned.into_boxed_str()))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({:?})", &*self.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Sound because equality, hashing and ordering of `DomainName` are those of its text.
impl Borrow<str> for DomainName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DomainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === helpers ===

/// `name` is `domain` or ends with `.domain`, both normalised.
pub(crate) fn is_within(name: &str, domain: &str) -> bool {
    match name.strip_suffix(domain) {
        Some("") => true,
        Some(head) => head.ends_with('.'),
        None => false,
    }
}

/// Parses an IPv6 literal (without brackets); IPv4-mapped addresses become IPv4 so that an
/// address classifier sees one form per destination (PE-17).
fn parse_ipv6(s: &str) -> Result<Host, NameError> {
    let ip = Ipv6Addr::from_str(s).map_err(|_| NameError::InvalidIpv6)?;
    Ok(Host::Ip(match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }))
}

/// UTS #46 ToASCII where it is needed; plain lowercasing otherwise. The result contains only
/// `[a-z0-9_.-]`; structure (labels, lengths) is checked later.
fn to_ascii(s: &str) -> Result<Cow<'_, str>, NameError> {
    if s.is_ascii() && !has_a_label(s) {
        // The common case, and the one bulk lists take: no IDNA work at all.
        check_chars(s)?;
        return Ok(if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        });
    }
    // idna 1.x implements only non-transitional processing (UTS #46 §4, Transitional_Processing
    // = false), which keeps `ß`, `ς`, ZWJ and ZWNJ distinct, as current browsers do. The ASCII
    // deny list is empty and hyphen placement is not checked, to accept what browsers accept
    // (`_`, `r3---sn-x.googlevideo.com`); `check_chars` then enforces our own character set on
    // the output, which also catches non-ASCII code points that map to ASCII punctuation.
    let out = Uts46::new()
        .to_ascii(
            s.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| NameError::Idna)?;
    check_chars(&out)?;
    Ok(out)
}

/// Whether any label starts with `xn--` (any case): such labels are validated by UTS #46 too.
fn has_a_label(s: &str) -> bool {
    s.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    })
}

/// Letters, digits, `-`, `_` and `.` only (RFC 1035 §2.3.1 plus `_`).
fn check_chars(s: &str) -> Result<(), NameError> {
    match s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(NameError::InvalidChar(c)),
        None => Ok(()),
    }
}

/// The WHATWG URL Standard "ends in a number checker": whether a browser would hand this host
/// to the IPv4 parser.
fn ends_in_a_number(s: &str) -> bool {
    let mut parts = s.rsplit('.');
    let mut last = parts.next().unwrap_or_default();
    if last.is_empty() {
        // One trailing dot is allowed; a lone empty string is not a number.
        match parts.next() {
            Some(p) => last = p,
            None => return false,
        }
    }
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    parse_ipv4_number(last).is_some()
}

/// The WHATWG URL Standard "IPv4 parser": 1 to 4 parts, each decimal, octal (`0` prefix) or
/// hexadecimal (`0x` prefix); the last part fills all remaining bytes (`127.1` = 127.0.0.1).
fn parse_ipv4(s: &str) -> Result<Ipv4Addr, NameError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in s.split('.') {
        let slot = numbers.get_mut(count).ok_or(NameError::InvalidIpv4)?;
        *slot = parse_ipv4_number(part).ok_or(NameError::InvalidIpv4)?;
        count += 1;
    }
    let (&last, init) = numbers[..count]
        .split_last()
        .ok_or(NameError::InvalidIpv4)?;
    if init.iter().any(|&n| n > 255) || last >= 1u64 << (8 * (5 - count)) {
        return Err(NameError::InvalidIpv4);
    }
    let mut addr = last;
    for (i, &n) in init.iter().enumerate() {
        addr += n << (8 * (3 - i));
    }
    let addr = u32::try_from(addr).map_err(|_| NameError::InvalidIpv4)?;
    Ok(Ipv4Addr::from(addr))
}

/// The WHATWG URL Standard "IPv4 number parser". `None` is failure (not a number); values too
/// large for any address saturate, since they only need to fail the range checks.
fn parse_ipv4_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if s.len() >= 2 && (s.starts_with("0x") || s.starts_with("0X")) {
        (&s[2..], 16)
    } else if s.len() >= 2 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    digits.chars().try_fold(0u64, |acc, c| {
        let d = c.to_digit(radix)?;
        Some(
            acc.saturating_mul(u64::from(radix))
                .saturating_add(u64::from(d)),
        )
    })
}
