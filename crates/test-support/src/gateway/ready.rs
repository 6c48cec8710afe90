//! The ready line: `sluice ready proxy=ADDR[,ADDR] admin=ADDR ca=PATH`, printed once on stderr
//! when the gateway listens (DESIGN.md, "Files and defaults").

use std::net::SocketAddr;
use std::path::PathBuf;

/// What the gateway prints on stderr once it listens.
pub(super) const READY_PREFIX: &str = "sluice ready ";

/// The addresses announced on the ready line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Every proxy listener.
    pub proxy: Vec<SocketAddr>,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The gateway CA certificate (PEM) clients must trust.
    pub ca: PathBuf,
}

/// Parses `... sluice ready proxy=A[,B] admin=C ca=PATH` (anything before the prefix, e.g. a
/// log timestamp, is ignored; a path containing spaces is kept whole).
pub fn parse_ready(line: &str) -> Result<Ready, String> {
    let start = line
        .find(READY_PREFIX)
        .ok_or_else(|| format!("not a ready line: {line:?}"))?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for token in line[start + READY_PREFIX.len()..].split_whitespace() {
        match (token.split_once('='), fields.last_mut()) {
            (Some((k, v)), _) => fields.push((k.to_owned(), v.to_owned())),
            // No '=': the continuation of a value with a space in it.
            (None, Some((_, v))) => {
                v.push(' ');
                v.push_str(token);
            }
            (None, None) => return Err(format!("unexpected {token:?} in ready line {line:?}")),
        }
    }
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("ready line has no {key}=: {line:?}"))
    };
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("bad address {s:?} in ready line {line:?}: {e}"))
    };
    let proxy = field("proxy")?
        .split(',')
        .map(addr)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ready {
        proxy,
        admin: addr(&field("admin")?)?,
        ca: PathBuf::from(field("ca")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let r = parse_ready(
            "2026-01-01T00:00:00Z INFO sluice ready proxy=127.0.0.1:41000,[::1]:41001 \
             admin=127.0.0.1:41002 ca=/tmp/a b/ca/sluice-ca.pem",
        )
        .expect("parses");
        assert_eq!(
            r.proxy,
            vec![
                "127.0.0.1:41000".parse().expect("addr"),
                "[::1]:41001".parse().expect("addr")
            ]
        );
        assert_eq!(r.admin, "127.0.0.1:41002".parse().expect("addr"));
        assert_eq!(r.ca, PathBuf::from("/tmp/a b/ca/sluice-ca.pem"));
    }

    #[test]
    fn rejects_incomplete_ready_lines() {
        assert!(parse_ready("sluice ready proxy=127.0.0.1:1 ca=/x").is_err());
        assert!(parse_ready("sluice ready proxy=nope admin=127.0.0.1:1 ca=/x").is_err());
        assert!(parse_ready("hello").is_err());
    }
}
