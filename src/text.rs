//! Outside text in our own messages: what a feed, a server or a tenant's file says is quoted
//! short and harmless, so that an issue, a log line or an API answer can neither carry a
//! whole file nor smuggle control sequences into an admin's terminal.

/// The most characters of outside text one quote carries.
pub const MAX_QUOTED: usize = 40;

/// At most [`MAX_QUOTED`] characters of `s`, with control characters escaped (`\n`,
/// `\u{1b}`), and `…` when it was cut.
pub fn excerpt(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    for c in chars.by_ref().take(MAX_QUOTED) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_cut_short_and_its_control_characters_escaped() {
        assert_eq!(excerpt("12.50"), "12.50");
        assert_eq!(excerpt("a\nb\u{1b}[31mred"), "a\\nb\\u{1b}[31mred");
        let long = "x".repeat(10_000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), MAX_QUOTED + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            excerpt(&"é".repeat(40)),
            "é".repeat(40),
            "characters, not bytes"
        );
    }
}
