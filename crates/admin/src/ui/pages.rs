//! The read-only pages: the policy tester, the application catalog (the seed's Table 1, live)
//! and the CA certificate with install instructions.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, Response};
use axum::Extension;
use serde_json::Value;
use sha2::Digest as _;

use super::{decision_badge, esc, page as layout, with_status, Nav};
use crate::auth::Caller;
use crate::check::{check, CheckParams};
use crate::AdminState;

/// `GET /tester?host=&client=&user=&sni=`.
pub async fn tester(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<CheckParams>, QueryRejection>,
) -> Response {
    let (params, mut status, mut result) = match q {
        Ok(Query(p)) => (p, StatusCode::OK, String::new()),
        Err(e) => (
            CheckParams::default(),
            StatusCode::BAD_REQUEST,
            format!("<p class=\"err\">{}</p>", esc(&e.body_text())),
        ),
    };
    if !params.is_empty() {
        match check(&s.rt, &params) {
            Ok(v) => result = verdict(&v),
            Err(e) => {
                status = e.status();
                result = format!("<p class=\"err\" id=\"error\">{}</p>", esc(&e.to_string()));
            }
        }
    }
    let field = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" id=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></label> ",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let body = format!(
        "<h1>Policy tester</h1>\
         <p>What the running gateway would decide for a connection, with every step of the \
         decision (the same as <code>sluice check</code>; approved and learned exceptions in \
         force are applied).</p>\
         <form method=\"get\" action=\"/tester\">{}{}{}{}<button type=\"submit\" id=\"check\">Check</button></form>{result}",
        field("host", "Host", &Some(params.host.clone()), "zoom.us"),
        field("client", "Client", &params.client, "127.0.0.1"),
        field("user", "User", &params.user, ""),
        field("sni", "SNI", &params.sni, "(same as host)"),
    );
    with_status(
        status,
        layout("Policy tester", Nav::Tester, Some(&caller), &body),
    )
}

fn verdict(v: &Value) -> String {
    let s = |k: &str| esc(v[k].as_str().unwrap_or("-"));
    let mut out = format!(
        "<h2 id=\"verdict\">{} <small>({})</small></h2><table>\
         <tr><th>Policy</th><td>{}</td></tr><tr><th>App</th><td>{}</td></tr>\
         <tr><th>Category</th><td>{}</td></tr><tr><th>Rule</th><td>{}</td></tr>\
         <tr><th>SNI mismatch</th><td>{}</td></tr></table><h2>Trace</h2>\
         <table id=\"trace\"><tr><th></th><th>Step</th><th>Detail</th></tr>",
        decision_badge(v["decision"].as_str().unwrap_or("-")),
        s("reason"),
        s("policy"),
        s("app"),
        s("category"),
        s("rule"),
        v["sni_mismatch"].as_bool().unwrap_or(false),
    );
    for step in v["trace"].as_array().into_iter().flatten() {
        let matched = step["matched"].as_bool().unwrap_or(false);
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            if matched { "✔" } else { "" },
            esc(step["step"].as_str().unwrap_or("")),
            esc(step["detail"].as_str().unwrap_or(""))
        ));
    }
    out.push_str("</table>");
    out
}

/// `GET /catalog`.
pub async fn catalog(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Html<String> {
    let apps = s.catalog.apps();
    let global = apps.iter().filter(|a| a.global_bypass).count();
    let mut body = format!(
        "<h1>Application catalog</h1><p>{} applications; {global} are bypassed globally \
         (never decrypted by a policy that keeps <code>global_bypass = true</code>), the others \
         are available for policy exceptions (<code>bypass.apps</code>). JSON: \
         <code>GET /api/apps</code>.</p>\
         <table id=\"catalog\"><tr><th>Application</th><th>Category</th><th>Coverage</th>\
         <th>Domains</th><th>Sources</th></tr>",
        apps.len()
    );
    for app in apps {
        let coverage = if app.global_bypass {
            "<b>global bypass</b>"
        } else {
            "available for exceptions"
        };
        let sources: Vec<String> = app.sources.iter().map(|src| source_link(src)).collect();
        body.push_str(&format!(
            "<tr><td>{} <code>{}</code></td><td>{}</td><td>{coverage}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&app.name),
            esc(&app.id),
            esc(&app.category),
            app.all_domains().count(),
            sources.join("<br>")
        ));
    }
    body.push_str("</table>");
    layout("Catalog", Nav::Catalog, Some(&caller), &body)
}

/// A source as a link when it is an http(s) URL, else as text.
fn source_link(src: &str) -> String {
    if src.starts_with("https://") || src.starts_with("http://") {
        format!(
            "<a href=\"{0}\" rel=\"noopener noreferrer\">{0}</a>",
            esc(src)
        )
    } else {
        esc(src)
    }
}

/// `GET /ca`.
pub async fn ca(State(s): State<AdminState>, Extension(caller): Extension<Caller>) -> Html<String> {
    let ca = s.rt.minter.ca();
    let not_after = ca.not_after().date().to_string();
    let chain = if ca.is_chain() {
        let root = hex::encode(sha2::Sha256::digest(ca.trust_der().as_ref()));
        let what = if ca.trust_is_root() {
            "the root at the end of the configured chain (<code>[ca] cert</code>)"
        } else {
            "the last certificate of the configured chain (<code>[ca] cert</code> holds no \
             self-signed root: devices must trust the enterprise root that issued it)"
        };
        format!(
            "<p id=\"ca-chain\">The downloads are {what}, SHA-256 <code>{root}</code>. Leaves \
             are signed by the intermediate below and sent with the chain.</p>"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>CA certificate</h1>\
         <p>Clients must trust this certificate authority to accept the certificates sluice \
         mints for decrypted sites. Each install has its own CA.</p>{chain}\
         <p><a href=\"/ca.pem\" id=\"ca-pem\">sluice-ca.pem</a> (PEM) · \
         <a href=\"/ca.der\" id=\"ca-der\">sluice-ca.cer</a> (DER, for Windows)</p>\
         <table><tr><th>SHA-256 fingerprint</th><td><code>{}</code></td></tr>\
         <tr><th>Valid until</th><td>{}</td></tr></table>\
         <p>Both downloads and <code>/proxy.pac</code> need no login, so devices can fetch them \
         while being enrolled.</p>{}",
        esc(ca.fingerprint()),
        esc(&not_after),
        INSTRUCTIONS
    );
    layout("CA certificate", Nav::Ca, Some(&caller), &body)
}

const INSTRUCTIONS: &str = "\
<h2>Windows</h2><pre>certutil -addstore -f Root sluice-ca.cer</pre>\
<p>From an administrator prompt; or Group Policy → Trusted Root Certification Authorities.</p>\
<h2>macOS</h2>\
<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain sluice-ca.pem</pre>\
<h2>Linux</h2>\
<pre># Debian, Ubuntu\nsudo cp sluice-ca.pem /usr/local/share/ca-certificates/sluice.crt &amp;&amp; sudo update-ca-certificates\n\
# Fedora, RHEL\nsudo cp sluice-ca.pem /etc/pki/ca-trust/source/anchors/sluice.pem &amp;&amp; sudo update-ca-trust</pre>\
<h2>Firefox and Chromium on Linux (NSS)</h2>\
<pre>certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n sluice -i sluice-ca.pem</pre>\
<p>Firefox: Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities → \
Import, or set <code>security.enterprise_roots.enabled</code> to use the system store.</p>\
<h2>curl, Python, Node</h2>\
<pre>curl --cacert sluice-ca.pem https://example.com/\n\
export SSL_CERT_FILE=/path/sluice-ca.pem            # OpenSSL-based tools\n\
export REQUESTS_CA_BUNDLE=/path/sluice-ca.pem       # Python requests\n\
export NODE_EXTRA_CA_CERTS=/path/sluice-ca.pem      # Node.js\n\
export HTTPS_PROXY=http://PROXY:3128 HTTP_PROXY=http://PROXY:3128</pre>\
<p>Or configure browsers and devices with the PAC file: <code>/proxy.pac</code> on this listener.</p>";
