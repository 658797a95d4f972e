//! A stable fingerprint of token streams: FNV-1a (64 bits) over a canonical text.
//!
//! The text is built here, token by token, rather than by the compiler's `Display` of a
//! token stream, whose spacing may change between compiler versions: a fingerprint must
//! only change when the code does.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The canonical text of `tokens`: one space between tokens, delimiters as written, and
/// the invisible group around a `macro_rules!` fragment left out (a block a macro writes
/// reads as the same block written out).
pub(crate) fn canonical_text(tokens: TokenStream) -> String {
    let mut text = String::new();
    write_tokens(&mut text, tokens);
    text
}

fn write_tokens(text: &mut String, tokens: TokenStream) {
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => {
                        write_tokens(text, group.stream());
                        continue;
                    }
                };
                text.push_str(open);
                text.push(' ');
                write_tokens(text, group.stream());
                text.push_str(close);
            }
            TokenTree::Ident(ident) => text.push_str(&ident.to_string()),
            TokenTree::Punct(punct) => text.push(punct.as_char()),
            TokenTree::Literal(literal) => text.push_str(&literal.to_string()),
        }
        text.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn canonical_text_ignores_spacing_but_not_code() {
        let a: TokenStream = "fn f(&mut self) { self.n += 1 }".parse().unwrap();
        let b: TokenStream = "fn f( &mut self ){self.n+=1}".parse().unwrap();
        let c: TokenStream = "fn f(&mut self) { self.n += 2 }".parse().unwrap();
        assert_eq!(canonical_text(a.clone()), canonical_text(b));
        assert_ne!(canonical_text(a), canonical_text(c));
    }

    #[test]
    fn canonical_text_reads_through_fragments() {
        let written: TokenStream = "fn f(&mut self, e: &Added) {}".parse().unwrap();
        let fragment = proc_macro2::Group::new(Delimiter::None, "Added".parse().unwrap());
        let generated = quote::quote!(fn f(&mut self, e: &#fragment) {});
        assert_eq!(canonical_text(written), canonical_text(generated));
    }
}
