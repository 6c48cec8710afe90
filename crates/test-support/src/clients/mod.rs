//! Real clients: the `curl` and `openssl` binaries (what users point at the gateway), raw TCP
//! and CONNECT helpers (for malformed input), and an in-process rustls client (for exact
//! control of SNI, ALPN and trust).
//!
//! The external binaries are required, never optional: if one is missing the helper panics
//! and says how to install it, because a silently skipped end-to-end test proves nothing.

pub mod rawch;
mod tls;
mod tunnel;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use crate::gateway::TestGateway;

pub use tls::{
    cert_issuer_cn, cert_subject_cn, http_get, peer_cert_issuer_cn, peer_cert_subject_cn,
    tls_over_tunnel, tls_over_tunnel_with, SimpleResponse, TlsClientOptions, Verify,
};
pub use tunnel::{connect_tunnel, raw_proxy_exchange, read_head, try_connect_tunnel, ConnectReply};

/// Default `--max-time` for curl and the deadline of `openssl s_client`.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Proxy variables that would silently reroute a "direct" curl; removed from its environment.
const PROXY_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Marks where our `--write-out` block starts on curl's stderr.
const META_MARK: &str = "@@sluice-test-meta@@";

/// What one curl run produced.
#[derive(Clone, Debug)]
pub struct CurlOutput {
    /// Exit status of the process.
    pub status: ExitStatus,
    /// curl's exit code (0 ok, 35 TLS handshake, 56 receive error, 60 bad certificate, 28
    /// timeout, 90 pinned key mismatch, ...); -1 when killed by a signal.
    pub code: i32,
    /// Everything written to stdout (the body unless `-o` was used).
    pub stdout: Vec<u8>,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

/// A curl run with the response metadata extracted (see [`curl_response`]).
#[derive(Clone, Debug)]
pub struct CurlResponse {
    /// The raw run; `stderr` has our metadata block removed.
    pub output: CurlOutput,
    /// Final HTTP status (`%{http_code}`), 0 when there was no response.
    pub http_code: u16,
    /// The proxy's reply to curl's CONNECT (`%{http_connect}`), 0 when there was none: a
    /// refused tunnel shows here (403, 502, 504) while `http_code` stays 0.
    pub http_connect: u16,
    /// `1.1`, `2` etc. (`%{http_version}`), `0` when there was no response.
    pub http_version: String,
    /// The response body (stdout).
    pub body: Vec<u8>,
    /// Headers of the final response, names lower-cased (the proxy's CONNECT reply excluded).
    pub headers: Vec<(String, String)>,
    /// curl's `%{certs}` text: the server chain as curl saw it (`Subject:`/`Issuer:` lines).
    pub certs: String,
}

// === curl ===

/// Runs `curl -q -sS --max-time 20 <args>` (no `.curlrc`, no proxy from the environment) and
/// collects its output. A `--max-time`/`-m` in `args` replaces the default.
pub fn curl(args: &[&str]) -> CurlOutput {
    let has_max_time = args.iter().any(|a| *a == "--max-time" || *a == "-m");
    let max_time = args
        .iter()
        .position(|a| *a == "--max-time" || *a == "-m")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(CLIENT_TIMEOUT, Duration::from_secs_f64);
    let mut cmd = Command::new("curl");
    // -q must come first: it stops curl from reading ~/.curlrc.
    cmd.arg("-q").arg("-sS");
    if !has_max_time {
        cmd.arg("--max-time")
            .arg(CLIENT_TIMEOUT.as_secs().to_string());
    }
    cmd.args(args);
    for var in PROXY_ENV {
        cmd.env_remove(var);
    }
    // curl enforces --max-time itself; this deadline only catches a curl that hangs anyway.
    let out = crate::process::run_with_timeout(cmd, b"", max_time + Duration::from_secs(10))
        .unwrap_or_else(|e| missing_tool("curl", &e));
    CurlOutput::from(out)
}

/// `curl --proxy <gateway> --cacert <gateway CA> <extra> <url>`: a client that trusts the
/// gateway's CA and goes through its proxy listener.
pub fn curl_via(gw: &TestGateway, url: &str, extra: &[&str]) -> CurlOutput {
    let proxy = gw.proxy_url();
    let ca = gw.ca_pem_path().to_string_lossy().into_owned();
    let mut args = vec!["--proxy", proxy.as_str(), "--cacert", ca.as_str()];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

/// [`curl_response`] through the gateway: `--proxy <gateway> --cacert <gateway CA> <extra>
/// <url>`.
pub fn curl_response_via(gw: &TestGateway, url: &str, extra: &[&str]) -> CurlResponse {
    let proxy = gw.proxy_url();
    let ca = gw.ca_pem_path().to_string_lossy().into_owned();
    let mut args = vec!["--proxy", proxy.as_str(), "--cacert", ca.as_str()];
    args.extend_from_slice(extra);
    args.push(url);
    curl_response(&args)
}

/// Runs curl with `args` plus a `--write-out` (to stderr) and `--dump-header`, and returns the
/// status, HTTP version, final headers, body and the server certificates curl saw.
/// `args` must not use `-w`/`-D` themselves.
pub fn curl_response(args: &[&str]) -> CurlResponse {
    let header_file = tempfile::NamedTempFile::new().expect("temp file for curl headers");
    let header_path = header_file.path().to_string_lossy().into_owned();
    let write_out = format!(
        "%{{stderr}}\n{META_MARK} %{{http_code}} %{{http_version}} %{{http_connect}}\n%{{certs}}"
    );
    let mut all: Vec<&str> = vec!["-D", &header_path, "-w", &write_out];
    all.extend_from_slice(args);
    let mut output = curl(&all);
    let (stderr, meta) = match output.stderr.find(META_MARK) {
        Some(i) => (
            output.stderr[..i].trim_end_matches('\n').to_owned(),
            output.stderr[i + META_MARK.len()..].to_owned(),
        ),
        None => (output.stderr.clone(), String::new()),
    };
    output.stderr = stderr;
    let (first, certs) = meta.split_once('\n').unwrap_or((meta.as_str(), ""));
    let mut fields = first.split_whitespace();
    let http_code = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let http_version = fields.next().unwrap_or("0").to_owned();
    let http_connect = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let raw_headers = std::fs::read_to_string(header_file.path()).unwrap_or_default();
    CurlResponse {
        body: output.stdout.clone(),
        output,
        http_code,
        http_connect,
        http_version,
        headers: last_header_block(&raw_headers),
        certs: certs.to_owned(),
    }
}

/// The headers of the last response in a `--dump-header` file (which also holds the proxy's
/// CONNECT reply and any 1xx responses).
fn last_header_block(raw: &str) -> Vec<(String, String)> {
    let normalized = raw.replace("\r\n", "\n");
    let block = normalized
        .split("\n\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or("");
    block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

// === impl CurlOutput ===

impl From<Output> for CurlOutput {
    fn from(out: Output) -> Self {
        Self {
            status: out.status,
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl CurlOutput {
    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Whether curl exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics, showing curl's stderr, unless curl exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "curl failed: {}", self.stderr);
        self
    }
}

// === impl CurlResponse ===

impl CurlResponse {
    /// The first value of a response header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The common name of the issuer of the server certificate curl saw (first `Issuer:` in
    /// `%{certs}`), e.g. the gateway CA's name for a decrypted flow or
    /// [`crate::pki::INTERMEDIATE_CN`] for a bypassed one.
    pub fn issuer_cn(&self) -> Option<String> {
        self.certs
            .lines()
            .find_map(|l| l.trim().strip_prefix("Issuer:"))
            .and_then(common_name)
    }

    /// The common name of the server certificate's subject (first `Subject:`).
    pub fn subject_cn(&self) -> Option<String> {
        self.certs
            .lines()
            .find_map(|l| l.trim().strip_prefix("Subject:"))
            .and_then(common_name)
    }
}

// === openssl s_client ===

/// `openssl s_client -proxy <proxy> -connect <connect> <extra>` fed `stdin`, killed after
/// [`CLIENT_TIMEOUT`]. s_client closes as soon as stdin ends, often before a response
/// arrives: to read one, pass `-ign_eof` (and send `Connection: close` so the server ends it).
/// OpenSSL 3 sends the `-connect` host as SNI unless `-noservername`; `-servername` overrides.
pub fn openssl_s_client(proxy: SocketAddr, connect: &str, extra: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-proxy")
        .arg(proxy.to_string())
        .arg("-connect")
        .arg(connect)
        .args(extra);
    crate::process::run_with_timeout(cmd, stdin, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| missing_tool("openssl", &e))
}

/// The issuer CN from `openssl s_client` output (`issuer=CN = X` in OpenSSL 3.0,
/// `issuer=CN=X` in later versions), searching stdout then stderr.
pub fn s_client_issuer_cn(out: &Output) -> Option<String> {
    [&out.stdout, &out.stderr].into_iter().find_map(|stream| {
        String::from_utf8_lossy(stream)
            .lines()
            .find_map(|l| l.trim().strip_prefix("issuer="))
            .and_then(common_name)
    })
}

/// The value of `CN` in a one-line DN as OpenSSL or curl print it (`C=US, CN = name, O=x`).
fn common_name(dn: &str) -> Option<String> {
    dn.split([',', '/'])
        .filter_map(|part| part.split_once('='))
        .find(|(k, _)| k.trim() == "CN")
        .map(|(_, v)| v.trim().to_owned())
}

fn missing_tool(tool: &str, err: &std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::NotFound {
        panic!("{tool} not installed: run the README test command, which installs it");
    }
    panic!("could not run {tool}: {err}");
}

/// Checks that `path` exists, with a message naming what it is (used before handing paths to
/// external tools, whose own errors are less clear).
pub(crate) fn require_file(path: &Path, what: &str) {
    assert!(path.exists(), "{what} {} does not exist", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_parses_openssl_and_curl_forms() {
        assert_eq!(
            common_name("CN = sluice test root").as_deref(),
            Some("sluice test root")
        );
        assert_eq!(common_name("CN=a.test, O=x").as_deref(), Some("a.test"));
        assert_eq!(common_name("C=US, CN = b").as_deref(), Some("b"));
        assert_eq!(common_name("/C=US/CN=c").as_deref(), Some("c"));
        assert_eq!(common_name("O=x"), None);
    }

    #[test]
    fn last_header_block_skips_the_connect_reply() {
        let raw = "HTTP/1.1 200 Connection established\r\n\r\n\
                   HTTP/2 200\r\nx-origin: a\r\ncontent-type: text/plain\r\n\r\n";
        let headers = last_header_block(raw);
        assert_eq!(
            headers,
            vec![
                ("x-origin".to_owned(), "a".to_owned()),
                ("content-type".to_owned(), "text/plain".to_owned())
            ]
        );
    }
}
