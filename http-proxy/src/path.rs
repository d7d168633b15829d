//! The request path the policy sees and the upstream gets: normalized so
//! that `/admin`, `/%61dmin`, `//admin` and `/x/../admin` are one path,
//! and a rule on `/admin/` cannot be walked around.
//!
//! Percent-escapes of unreserved characters are decoded (RFC 3986 §6.2.2),
//! other escapes are kept with upper-case hex (so `%2F` stays a byte in a
//! segment, not a separator), runs of `/` become one, and `.` and `..`
//! segments are resolved (§5.2.4). The upstream receives the normalized
//! path, so it serves exactly what the policy allowed.

/// The normalized form of `raw` (a request target's path, without its
/// query). `None` for a path that does not start with `/` or carries a
/// NUL.
pub fn normalize(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(0) => return None,
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                    decoded.push(char::from(c));
                }
                Some(c) => decoded.push_str(&format!("%{c:02X}")),
                None => decoded.push_str("%25"),
            }
            i += if hex.is_some() { 3 } else { 1 };
            continue;
        }
        if b == 0 {
            return None;
        }
        // Everything else passes as it came (hyper has checked the
        // request target's characters).
        let ch_len = utf8_len(b);
        match raw.get(i..i + ch_len) {
            Some(s) => decoded.push_str(s),
            None => return None,
        }
        i += ch_len;
    }
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Some(path)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Whether `path` (normalized) is under `prefix` (a route's, `/` or
/// `/seg[/...]`): equal to it, or below it at a segment boundary, so
/// `/grafana` serves `/grafana/x` but not `/grafanax`.
pub fn under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let bare = prefix.trim_end_matches('/');
    path == bare
        || path
            .strip_prefix(bare)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_path_is_one_path() {
        for (raw, want) in [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("//admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/./admin/.", "/admin/"),
            ("/a/b/../../../admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%zz", "/a%25zz"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/dir/..", "/"),
            ("/é", "/é"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(normalize("admin"), None);
        assert_eq!(normalize("/a%00b"), None);
    }

    #[test]
    fn prefixes_end_at_a_segment() {
        assert!(under("/grafana", "/grafana"));
        assert!(under("/grafana/", "/grafana"));
        assert!(under("/grafana/d/1", "/grafana"));
        assert!(!under("/grafanax", "/grafana"));
        assert!(under("/anything", "/"));
        assert!(under("/api/x", "/api/"));
        assert!(!under("/apix", "/api/"));
    }
}
