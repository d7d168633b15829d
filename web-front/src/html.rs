//! HTML, written as text with every value escaped. Nothing a user, an IdP
//! or a recording supplies reaches a page unescaped, and pages carry no
//! inline script (the CSP forbids it).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (terminal escapes) are shown, not kept.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` is text, `body` is HTML the caller built with
/// [`esc`].
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · Gatehouse</title></head>\n<body>\n<h1>{}</h1>\n{body}\n</body></html>\n",
        esc(title),
        esc(title)
    );
    html_response(status, html)
}

pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Percent-encodes text for a URL query value or path segment.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded query value (`+` is a space); invalid
/// escapes are kept as they are.
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = || {
            let h = bytes.get(i + 1..i + 3)?;
            u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        match b {
            b'%' if hex().is_some() => {
                out.extend(hex());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A page that says one thing: an error, or what just happened.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p id=\"message\">{}</p>\n<p><a href=\"/\">Gatehouse</a></p>",
            esc(text)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_terminal_escapes_are_text() {
        assert_eq!(
            esc("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            esc("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(esc("\u{1b}]0;title\u{7}"), "\u{FFFD}]0;title\u{FFFD}");
        assert_eq!(esc("it's & ok"), "it&#39;s &amp; ok");
    }

    #[test]
    fn query_values_round_trip() {
        let text = "rm -rf /tmp/ä&b=c+d%";
        assert_eq!(url_decode(&url_encode(text)), text);
        assert_eq!(url_decode("a+b%20c%zz"), "a b c%zz");
    }
}
