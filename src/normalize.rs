//! Text normalization shared by the compiler (keywords) and the decision (input).
//! STUB: owned by the engine work.

use std::borrow::Cow;

/// Normalizes `text` for matching: default-ignorable code points removed, NFKC,
/// full case folding. Takes an ASCII fast path when it can.
pub fn normalize(text: &str) -> Cow<'_, str> {
    // Placeholder until the ICU pipeline lands: enough for the loader's emptiness check.
    Cow::Owned(
        text.chars()
            .filter(|c| !matches!(c, '\u{200b}'..='\u{200f}' | '\u{feff}' | '\u{ad}'))
            .collect::<String>()
            .to_lowercase(),
    )
}
