//! Subjects: where the relay publishes an event, and the reversible escaping of stream ids
//! into subject tokens.

use std::fmt::Write as _;

/// The aggregate token of a stream without a category (no `-`, or nothing before it).
pub const NO_CATEGORY: &str = "_";

/// Escapes `text` into one NATS subject token, reversibly ([`unescape_token`]).
///
/// A subject token cannot hold `.` (the separator), `*` and `>` (wildcards) or whitespace.
/// Each of these, every other ASCII control or space character, and `%` itself (the escape
/// character) is written as `%XX`, its byte in upper-case hexadecimal (a non-ASCII
/// whitespace character, each byte of its UTF-8 encoding). Every other character,
/// non-ASCII ones included, is kept as it is. The token is empty only for an empty text,
/// which a stream id never is.
///
/// ```
/// use esrs_nats::subject::{escape_token, unescape_token};
///
/// assert_eq!(escape_token("cart-42"), "cart-42");
/// assert_eq!(escape_token("a.b *>%"), "a%2Eb%20%2A%3E%25");
/// assert_eq!(unescape_token("a%2Eb%20%2A%3E%25").as_deref(), Some("a.b *>%"));
/// ```
pub fn escape_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '.' | '*' | '>' | '%') || c.is_ascii_whitespace() || c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", c as u32);
        } else if c.is_whitespace() {
            // Non-ASCII whitespace: every byte of its UTF-8 encoding.
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_token`]; `None` when `token` holds a `%` not followed by two
/// hexadecimal digits, or escapes that do not decode to UTF-8.
pub fn unescape_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The aggregate of a stream: its category, the text before the first `-`
/// (`cart-42` → `cart`, as [`StreamId::in_category`](esrs_core::StreamId::in_category)
/// names the streams of a [`Repository`](esrs_core::Repository)); `None` for a stream
/// without one (no `-`, or nothing before it).
pub fn category(stream: &str) -> Option<&str> {
    match stream.split_once('-') {
        Some((category, _)) if !category.is_empty() => Some(category),
        _ => None,
    }
}

/// The default subject of an event of `stream`: `<prefix>.<aggregate>.<stream id>`.
///
/// The aggregate token is the stream's [`category`], or [`NO_CATEGORY`] (`_`) for a stream
/// without one; the last token is the whole stream id. Both are escaped with
/// [`escape_token`], so the subject has two tokens more than the prefix, and the stream id
/// reads back from the last token with [`unescape_token`]. A stream without a category
/// shares the `_` aggregate token with a category literally named `_`; its stream token
/// still tells them apart.
///
/// ```
/// use esrs_nats::subject::default_subject;
///
/// assert_eq!(default_subject("esrs", "cart-42"), "esrs.cart.cart-42");
/// assert_eq!(default_subject("esrs", "config"), "esrs._.config");
/// assert_eq!(default_subject("esrs", "order-1.2"), "esrs.order.order-1%2E2");
/// ```
pub fn default_subject(prefix: &str, stream: &str) -> String {
    let aggregate = category(stream).map_or_else(|| NO_CATEGORY.to_owned(), escape_token);
    format!("{prefix}.{aggregate}.{}", escape_token(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legal_token(token: &str) -> bool {
        !token.is_empty()
            && !token
                .chars()
                .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    }

    #[test]
    fn every_escaped_token_is_legal_and_reads_back() {
        for text in [
            "cart-42",
            "a.b",
            "*",
            ">",
            "%",
            "%2E",
            "a b\tc",
            "ünïcödé-ß",
            "x\u{00a0}y\u{2003}z",
            "..**>>%%",
            "order-1.2.3",
            "100%",
        ] {
            let token = escape_token(text);
            assert!(legal_token(&token), "{text:?} escaped to illegal {token:?}");
            assert_eq!(unescape_token(&token).as_deref(), Some(text), "{token:?}");
        }
    }

    #[test]
    fn escaping_is_injective() {
        // `%` is escaped itself, so an escaped text never reads as another's escape.
        assert_ne!(escape_token("%2E"), escape_token("."));
        assert_eq!(escape_token("%2E"), "%252E");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(unescape_token("%"), None);
        assert_eq!(unescape_token("%2"), None);
        assert_eq!(unescape_token("%ZZ"), None);
        assert_eq!(unescape_token("%FF"), None);
    }

    #[test]
    fn categories() {
        assert_eq!(category("cart-42"), Some("cart"));
        assert_eq!(category("cart-42-x"), Some("cart"));
        assert_eq!(category("-42"), None);
        assert_eq!(category("plain"), None);
        assert_eq!(default_subject("p", "-42"), "p._.-42");
        assert_eq!(default_subject("p.q", "a.b-c"), "p.q.a%2Eb.a%2Eb-c");
    }
}
