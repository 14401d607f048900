//! Text normalization shared by the compiler (keywords) and the decision (input).
//!
//! Matching must not be fooled by case, width, ligatures or invisible characters, so
//! both sides of a keyword match go through the same three steps, in this order:
//!
//! 1. remove every `Default_Ignorable_Code_Point` (zero-width spaces and joiners, soft
//!    hyphen, BOM, variation selectors, …);
//! 2. Unicode NFKC;
//! 3. full case folding (`CaseFolding.txt` statuses C and F, so `ß` becomes `ss`).
//!
//! Nothing else changes: whitespace, punctuation and accents stay.
//!
//! Case folding is the expensive stage (tens of microseconds for a 2 KB prompt), and
//! most prompts are mostly ASCII, for which the three steps reduce to ASCII
//! lowercasing. [`normalize`] therefore lowercases ASCII runs directly and only hands
//! the stretches around non-ASCII characters to ICU4X. This is exact, not a heuristic:
//! steps 1 and 3 work character by character, and the position just before an ASCII
//! character is a stable NFKC boundary (ASCII is never ignorable, never decomposes and
//! never combines with what precedes it), so normalizing the text piecewise at such
//! positions gives the same result as normalizing it whole. A stretch handed to ICU4X
//! starts at the ASCII character before its first non-ASCII one, because a combining
//! mark composes with the starter before it (`e` + U+0301 → `é`).
//! [`normalize_general`] is the straight pipeline the fast path is tested against.

mod strict;

pub use strict::{Strict, strict_keyword};

use std::borrow::Cow;

use icu_casemap::CaseMapperBorrowed;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointSetDataBorrowed;
use icu_properties::props::DefaultIgnorableCodePoint;

/// An ASCII run shorter than this between non-ASCII characters is normalized together
/// with them: one ICU4X call over a whole Cyrillic sentence is cheaper than one per
/// word.
const MIN_ASCII_RUN: usize = 16;

fn ignorables() -> CodePointSetDataBorrowed<'static> {
    CodePointSetDataBorrowed::new::<DefaultIgnorableCodePoint>()
}

/// Normalizes `text` for matching: default-ignorable code points removed, NFKC,
/// full case folding. Takes an ASCII fast path when it can, and borrows `text` when
/// it is already normalized ASCII.
pub fn normalize(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        };
    }
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    Cow::Owned(out)
}

/// The text detectors read: default-ignorable code points removed, then NFKC,
/// without case folding (so full-width digits are digits and `AKIA` keeps
/// its case). Borrows `text` when it is ASCII, which both steps leave as it is.
pub fn for_detectors(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    let set = ignorables();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    if text.chars().any(|c| set.contains(c)) {
        let visible: String = text.chars().filter(|&c| !set.contains(c)).collect();
        return Cow::Owned(nfkc.normalize(&visible).into_owned());
    }
    nfkc.normalize(text)
}

/// Appends the normalization of `text` to `out`, with the same fast path as
/// [`normalize`]. Lets the decision reuse one buffer across messages and requests.
pub fn normalize_into(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        let Some(j) = bytes[i..].iter().position(|b| !b.is_ascii()).map(|p| p + i) else {
            push_ascii_lowercase(&text[i..], out);
            return;
        };
        // The ASCII character just before a non-ASCII one may compose with it.
        let start = if j > i { j - 1 } else { j };
        push_ascii_lowercase(&text[i..start], out);
        let end = stretch_end(bytes, j);
        push_general(&text[start..end], out);
        i = end;
    }
}

/// Where the stretch of text that begins with a non-ASCII character at `from` ends:
/// at the start of the next ASCII run of at least [`MIN_ASCII_RUN`] bytes, or at
/// the end of the text (always an ASCII byte, hence a character boundary).
fn stretch_end(bytes: &[u8], from: usize) -> usize {
    let n = bytes.len();
    let mut k = from;
    loop {
        while k < n && !bytes[k].is_ascii() {
            k += 1;
        }
        let run = k;
        while k < n && bytes[k].is_ascii() {
            k += 1;
        }
        if k - run >= MIN_ASCII_RUN {
            return run;
        }
        if k == n {
            return n;
        }
    }
}

fn push_ascii_lowercase(ascii: &str, out: &mut String) {
    let at = out.len();
    out.push_str(ascii);
    out[at..].make_ascii_lowercase();
}

/// Appends the three steps applied to `text`; each step borrows its input when it
/// changes nothing, so already-normalized text is copied once.
fn push_general(text: &str, out: &mut String) {
    let set = ignorables();
    let visible: Cow<'_, str> = if text.chars().any(|c| set.contains(c)) {
        Cow::Owned(text.chars().filter(|&c| !set.contains(c)).collect())
    } else {
        Cow::Borrowed(text)
    };
    let composed = ComposingNormalizerBorrowed::new_nfkc().normalize(&visible);
    out.push_str(&CaseMapperBorrowed::new().fold_string(&composed));
}

/// The straight three-step pipeline with no fast path, the reference that
/// [`normalize`] must always agree with.
pub fn normalize_general(text: &str) -> String {
    let set = ignorables();
    let visible: String = text.chars().filter(|&c| !set.contains(c)).collect();
    let composed = ComposingNormalizerBorrowed::new_nfkc().normalize(&visible);
    CaseMapperBorrowed::new()
        .fold_string(&composed)
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(text: &str) -> String {
        let fast = normalize(text).into_owned();
        assert_eq!(
            fast,
            normalize_general(text),
            "fast path differs on {text:?}"
        );
        fast
    }

    #[test]
    fn ascii_is_lowercased_and_borrowed_when_already_lower() {
        assert_eq!(n("CONFIDENTIAL Memo"), "confidential memo");
        assert!(matches!(normalize("already lower"), Cow::Borrowed(_)));
        assert!(matches!(normalize("Not lower"), Cow::Owned(_)));
        assert_eq!(n(""), "");
    }

    #[test]
    fn width_invisibles_and_ligatures_fold_to_the_keyword() {
        for text in [
            "CONFIDENTIAL",
            "ｃｏｎｆｉｄｅｎｔｉａｌ",
            "confi\u{200b}dential",
            "con\u{fb01}dential",
            "ＣＯＮＦＩＤＥＮＴＩＡＬ",
            "Confi\u{ad}den\u{200d}tial",
        ] {
            assert_eq!(n(text), "confidential", "{text:?}");
        }
    }

    #[test]
    fn full_case_folding() {
        assert_eq!(n("Straße"), "strasse");
        assert_eq!(n("STRASSE"), "strasse");
        assert_eq!(n("ΣΊΣΥΦΟΣ"), "σίσυφοσ");
        assert_eq!(n("ПРИВЕТ"), "привет");
    }

    #[test]
    fn accents_stay() {
        assert_eq!(n("Résumé"), "résumé");
        assert_ne!(n("résumé"), n("resume"));
        // A decomposed accent composes with the ASCII letter before it.
        assert_eq!(n("cafe\u{301}"), "café");
        assert_eq!(n("CAFE\u{301} au lait"), "café au lait");
        assert_eq!(n("cafe\u{200b}\u{301}"), "café");
    }

    #[test]
    fn default_ignorables_are_removed() {
        assert_eq!(n("soft\u{ad}hyphen"), "softhyphen");
        assert_eq!(n("\u{feff}bom"), "bom");
        assert_eq!(n("vs\u{fe0f}16"), "vs16");
        assert_eq!(n("vs\u{e0100}256"), "vs256");
        assert_eq!(n("zw\u{200c}nj\u{2060}wj"), "zwnjwj");
        assert_eq!(n("\u{200b}\u{200b}"), "");
    }

    #[test]
    fn whitespace_and_punctuation_stay() {
        assert_eq!(n("A  B\t«C»\n"), "a  b\t«c»\n");
    }

    #[test]
    fn long_ascii_runs_around_non_ascii() {
        let text = format!(
            "{}É{}\u{301}{}Ｘ",
            "A".repeat(40),
            "B".repeat(3),
            "C".repeat(20)
        );
        n(&text);
    }

    fn ascii_heavy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => "[ -~]{0,24}",
            1 => Just("\u{301}".to_owned()),
            1 => Just("\u{200b}".to_owned()),
            1 => Just("ß".to_owned()),
            1 => Just("Ｆ".to_owned()),
            1 => Just("\u{fb01}".to_owned()),
            1 => Just("É".to_owned()),
            1 => Just("\u{fe0f}".to_owned()),
            1 => Just("ǅ".to_owned()),
            1 => Just("\u{3b9}\u{308}\u{301}".to_owned()),
            1 => any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_path_equals_general_on_arbitrary_text(text in any::<String>()) {
            prop_assert_eq!(normalize(&text).into_owned(), normalize_general(&text));
        }

        #[test]
        fn fast_path_equals_general_on_ascii_heavy_text(text in ascii_heavy()) {
            prop_assert_eq!(normalize(&text).into_owned(), normalize_general(&text));
            let mut buf = String::from("prefix");
            normalize_into(&text, &mut buf);
            prop_assert_eq!(&buf[6..], normalize_general(&text));
        }
    }
}
