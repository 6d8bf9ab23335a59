//! Stage 5: what was found -> text and machine formats. stdout carries the report only.

pub mod explain;
pub mod flows;
pub mod html;
pub mod verdicts;

/// Said of a connection whose first RST has a TTL unlike its sender's other packets.
pub(crate) const RST_FROM_MIDDLEBOX: &str =
    "The RST's TTL differs from its sender's other packets: it probably came from a middlebox.";

/// `s` cut to at most `width` characters, an ellipsis marking the cut.
pub(crate) fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(width.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}
