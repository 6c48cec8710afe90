//! What clients see when the gateway refuses or fails: one place that turns a reason into an
//! HTTP response (status, short HTML page, `Cache-Control: no-store`, the machine-readable
//! reason in `X-Sluice-Reason`), with every reflected value HTML-escaped and nothing internal
//! leaked (security matrix PP-06).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Builds an error or block page.
pub fn page(
    status: u16,
    reason: &str,
    title: &str,
    detail: &str,
    request_id: u64,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{detail}</p><p>Reason: <code>{reason}</code><br>\
         Request id: <code>{request_id}</code></p><p><small>sluice secure web gateway</small></p>\
         </body></html>\n",
        title = escape(title),
        detail = escape(detail),
        reason = escape(reason),
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert("x-sluice-reason", v);
    }
    resp
}

/// Title for a status.
pub fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        403 => "Blocked by policy",
        405 => "Method not allowed",
        407 => "Proxy authentication required",
        421 => "Misdirected request",
        431 => "Request header fields too large",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "Request failed",
    }
}

/// Minimal HTML escaping for reflected text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflections_are_escaped() {
        let resp = page(
            403,
            "blocked:domain",
            "Blocked",
            "<script>alert(1)</script>",
            7,
        );
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert!(escape("<script>").contains("&lt;script&gt;"));
    }
}
