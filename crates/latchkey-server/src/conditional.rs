//! Conditional GET: `If-None-Match` as RFC 9110 §13.1.2 defines it — weak comparison, `*`,
//! and lists of entity tags, over one or several header lines.

use http::{HeaderMap, header};

/// Whether `If-None-Match` matches the current `etag` (so the answer is 304).
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let current = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| value.trim() == "*" || entity_tags(value).any(|tag| Some(tag) == current))
}

/// The opaque tag (quotes included) of an entity tag, weak or strong.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then_some(tag)
}

/// The opaque tags of a comma-separated list; a comma inside quotes belongs to its tag. Parsing
/// stops at the first malformed member.
fn entity_tags(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let body = rest.strip_prefix("W/").unwrap_or(rest);
        let start = list.len() - body.len();
        let inner = body.strip_prefix('"')?;
        let end = inner.find('"')?;
        let tag = &list[start..start + end + 2];
        rest = &inner[end + 1..];
        Some(tag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn matches(values: &[&str], etag: &str) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        none_match(&h, etag)
    }

    #[test]
    fn weak_comparison_star_and_lists() {
        let etag = "\"abc\"";
        assert!(matches(&["\"abc\""], etag));
        assert!(matches(&["W/\"abc\""], etag));
        assert!(matches(&["*"], etag));
        assert!(matches(&["\"x\", W/\"abc\""], etag));
        assert!(matches(&["\"x\",\"abc\""], etag));
        assert!(matches(&["\"x\"", "\"abc\""], etag));
        assert!(matches(&["\"a,b\", \"abc\""], etag));
        assert!(matches(&["\"abc\""], "W/\"abc\""));
    }

    #[test]
    fn anything_else_does_not_match() {
        let etag = "\"abc\"";
        assert!(!matches(&[], etag));
        assert!(!matches(&["\"abcd\""], etag));
        assert!(!matches(&["abc"], etag));
        assert!(!matches(&["w/\"abc\""], etag));
        assert!(!matches(&["\"a,b\""], "\"a\""));
        assert!(!matches(&["\"abc"], etag));
        assert!(!matches(&[""], etag));
    }
}
