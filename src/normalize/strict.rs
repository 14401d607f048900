//! `keyword_normalization: strict`: the five steps that undo disguises, applied
//! after the standard three (docs/policy-guide.md, "Keyword normalization").
//!
//! 1. **Marks**: canonical decomposition, then every combining mark (`Mn`, `Me`)
//!    removed.
//! 2. **Controls and blanks**: controls other than tab and line breaks, format
//!    characters and U+2800 removed; a run of whitespace reads as one space,
//!    every line break as `\n`.
//! 3. **Look-alikes**: each character outside ASCII replaced by its prototype in
//!    the Unicode confusables data (UTS #39, from the `unicode-security` crate),
//!    ASCII letters of the prototype lowercased. ASCII itself is left alone (the
//!    data would turn `m` into `rn`), so plain keywords still match plain text.
//! 4. **Digits and symbols for letters**, in a run of letters, digits and
//!    `! | @ $` that holds a letter: `0` → `o`, `1` and `l` → `i`, `3` → `e`,
//!    `4` → `a`, `5` → `s`, `7` → `t`, and `!` `|` → `i`, `@` → `a`, `$` → `s`
//!    when a letter or digit of the run follows.
//! 5. **Joins**: three or more single letters or digits, each one to three
//!    spaces or punctuation characters from the next, are joined; a line break
//!    with a letter on both sides (optionally `-` before it, indentation after
//!    it) is removed. The joined form is kept beside the plain one: a keyword
//!    matches when it occurs in either.
//!
//! Keywords go through steps 1 to 4 ([`strict_keyword`]); text through all five
//! ([`Strict::normalize`]). ASCII text, the common case, takes a byte-level path
//! for steps 2, 4 and 5 that the tests hold equal to the character-level one.

use std::cell::RefCell;
use std::collections::HashMap;

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::props::{GeneralCategory, GeneralCategoryGroup, WhiteSpace};
use icu_properties::{CodePointMapData, CodePointSetData};

/// The strict forms of one text, in buffers reused from one text to the next.
#[derive(Debug, Default)]
pub struct Strict {
    /// Steps 1 to 3; then scratch for the joined form before step 4.
    base: String,
    /// Steps 1 to 4.
    plain: String,
    /// Steps 1 to 5, when a join happened.
    joined: String,
    has_joins: bool,
    /// Byte ranges of `plain` that the joins remove, in order.
    removed: Vec<(usize, usize)>,
}

impl Strict {
    /// Computes the strict forms of `standard`, text that has been through the
    /// standard normalization (`super::normalize`).
    pub fn normalize(&mut self, standard: &str) {
        self.base.clear();
        clean(standard, &mut self.base);
        self.plain.clear();
        letters(&self.base, &mut self.plain);
        if self.plain.is_ascii() {
            find_joins_ascii(&self.plain, &mut self.removed);
        } else {
            find_joins(&self.plain, &mut self.removed);
        }
        self.has_joins = !self.removed.is_empty();
        if self.has_joins {
            self.base.clear();
            let mut from = 0;
            for &(start, end) in &self.removed {
                self.base.push_str(&self.plain[from..start]);
                from = end;
            }
            self.base.push_str(&self.plain[from..]);
            // A digit of a letter-spaced word joins a run of letters only now.
            self.joined.clear();
            letters(&self.base, &mut self.joined);
        }
    }

    /// Steps 1 to 4: what every keyword is looked for in.
    pub fn plain(&self) -> &str {
        &self.plain
    }

    /// Steps 1 to 5, when a join changed the text: looked in as well.
    pub fn joined(&self) -> Option<&str> {
        self.has_joins.then_some(self.joined.as_str())
    }

    /// Frees buffers that grew past `max` bytes, so that one huge request does
    /// not pin its size for good.
    pub fn shrink(&mut self, max: usize) {
        for buffer in [&mut self.base, &mut self.plain, &mut self.joined] {
            if buffer.capacity() > max {
                *buffer = String::new();
            }
        }
    }
}

/// The strict form of a keyword already through the standard normalization:
/// steps 1 to 4 (joins apply to text only; a keyword is matched against both
/// forms of it).
pub fn strict_keyword(standard: &str) -> String {
    let mut base = String::with_capacity(standard.len());
    clean(standard, &mut base);
    let mut out = String::with_capacity(base.len());
    letters(&base, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Steps 1 to 3: marks, controls and blanks, look-alikes.

/// What step 2 does with one character.
enum Blank {
    /// Part of a run of whitespace: the run reads as one space.
    Space,
    /// A line break: reads as `\n`.
    Break,
    /// Removed.
    Drop,
    /// Kept (and, outside ASCII, mapped by step 3).
    Keep,
}

fn clean(text: &str, out: &mut String) {
    if text.is_ascii() {
        clean_ascii(text, out);
    } else {
        clean_general(text, out);
    }
}

fn clean_general(text: &str, out: &mut String) {
    let decomposed = DecomposingNormalizerBorrowed::new_nfd().normalize(text);
    let categories = CodePointMapData::<GeneralCategory>::new();
    let whitespace = CodePointSetData::new::<WhiteSpace>();
    let mut space = false;
    let mut chars = decomposed.chars().peekable();
    while let Some(c) = chars.next() {
        let blank = match c {
            '\n' | '\u{2028}' | '\u{2029}' => Blank::Break,
            '\r' => {
                chars.next_if_eq(&'\n');
                Blank::Break
            }
            '\t' => Blank::Space,
            '\u{2800}' => Blank::Drop,
            _ => {
                let category = categories.get(c);
                if is_combining_mark(category)
                    || matches!(category, GeneralCategory::Control | GeneralCategory::Format)
                {
                    Blank::Drop
                } else if whitespace.contains(c) {
                    Blank::Space
                } else {
                    Blank::Keep
                }
            }
        };
        match blank {
            Blank::Space => space = true,
            Blank::Drop => {}
            Blank::Break => {
                if std::mem::take(&mut space) {
                    out.push(' ');
                }
                out.push('\n');
            }
            Blank::Keep => {
                if std::mem::take(&mut space) {
                    out.push(' ');
                }
                if c.is_ascii() {
                    out.push(c);
                } else {
                    push_prototype(c, out);
                }
            }
        }
    }
    if space {
        out.push(' ');
    }
}

/// Step 2 on ASCII (steps 1 and 3 change nothing there): copies stretches
/// that need no change in bulk.
fn clean_ascii(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let blankish = |b: u8| b <= b' ' || b == 0x7f;
    let mut from = 0;
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        if !blankish(b) || (b == b' ' && !bytes.get(i + 1).is_some_and(|&next| blankish(next))) {
            i += 1;
            continue;
        }
        out.push_str(&text[from..i]);
        let mut space = false;
        while i < n && blankish(bytes[i]) {
            match bytes[i] {
                b' ' | b'\t' => space = true,
                b'\n' | b'\r' => {
                    if std::mem::take(&mut space) {
                        out.push(' ');
                    }
                    out.push('\n');
                    if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if space {
            out.push(' ');
        }
        from = i;
    }
    out.push_str(&text[from..]);
}

/// Prototypes already computed on this thread. Bounded: text with many distinct
/// characters empties it now and then rather than growing it.
const MAX_PROTOTYPES: usize = 8192;

thread_local! {
    static PROTOTYPES: RefCell<HashMap<char, Box<str>>> = RefCell::new(HashMap::new());
}

/// Appends the look-alike prototype of `c` (not ASCII): its UTS #39 skeleton,
/// with marks removed and ASCII letters lowercased, since the text it lands in
/// has been case folded and stripped of marks already.
fn push_prototype(c: char, out: &mut String) {
    let cached = PROTOTYPES.try_with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some(p) = cache.get(&c) {
            out.push_str(p);
            return;
        }
        let p = prototype(c);
        out.push_str(&p);
        if cache.len() >= MAX_PROTOTYPES {
            cache.clear();
        }
        cache.insert(c, p);
    });
    if cached.is_err() {
        out.push_str(&prototype(c));
    }
}

/// A mark step 1 removes: nonspacing (`Mn`) or enclosing (`Me`).
fn is_combining_mark(category: GeneralCategory) -> bool {
    matches!(
        category,
        GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
    )
}

fn prototype(c: char) -> Box<str> {
    let categories = CodePointMapData::<GeneralCategory>::new();
    let mut buf = [0u8; 4];
    unicode_security::confusable_detection::skeleton(c.encode_utf8(&mut buf))
        .filter(|&p| !is_combining_mark(categories.get(p)))
        .map(|p| p.to_ascii_lowercase())
        .collect::<String>()
        .into_boxed_str()
}

// ---------------------------------------------------------------------------
// Step 4: digits and symbols for letters.

/// A character of a run that step 4 looks at: a letter, a digit or `! | @ $`.
fn in_run(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '!' | '|' | '@' | '$')
}

fn letters(text: &str, out: &mut String) {
    if text.is_ascii() {
        letters_ascii(text, out);
    } else {
        letters_general(text, out);
    }
}

/// The letter a digit, `l` or a symbol reads as inside a run that holds a
/// letter; `next_is_alnum` says whether a letter or digit of the run follows.
#[inline]
fn read_as(c: char, next_is_alnum: bool) -> char {
    match c {
        '0' => 'o',
        '1' | 'l' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '!' | '|' if next_is_alnum => 'i',
        '@' if next_is_alnum => 'a',
        '$' if next_is_alnum => 's',
        _ => c,
    }
}

fn letters_general(text: &str, out: &mut String) {
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(in_run).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c| !in_run(c)).unwrap_or(rest.len());
        let run = &rest[..end];
        if run.chars().any(char::is_alphabetic) {
            let mut chars = run.chars().peekable();
            while let Some(c) = chars.next() {
                let next_is_alnum = chars.peek().is_some_and(|n| n.is_alphanumeric());
                out.push(read_as(c, next_is_alnum));
            }
        } else {
            out.push_str(run);
        }
        rest = &rest[end..];
    }
}

/// Classes of ASCII bytes for step 4, one table lookup per byte.
const RUN: u8 = 1;
const ALPHA: u8 = 2;
/// A byte that a run with a letter changes, or that may (a symbol).
const CHANGES: u8 = 4;
const ALNUM: u8 = 8;

const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        let mut class = 0;
        if byte.is_ascii_alphanumeric() {
            class |= RUN | ALNUM;
        }
        if byte.is_ascii_alphabetic() {
            class |= ALPHA;
        }
        if matches!(byte, b'!' | b'|' | b'@' | b'$') {
            class |= RUN | CHANGES;
        }
        if matches!(byte, b'0' | b'1' | b'l' | b'3' | b'4' | b'5' | b'7') {
            class |= CHANGES;
        }
        table[b] = class;
        b += 1;
    }
    table
};

fn letters_ascii(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let class = |i: usize| CLASSES[usize::from(bytes[i])];
    let mut buffer = std::mem::take(out).into_bytes();
    let mut from = 0;
    let mut i = 0;
    while i < n {
        if class(i) & RUN == 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut seen = 0;
        while i < n && class(i) & RUN != 0 {
            seen |= class(i);
            i += 1;
        }
        if seen & (ALPHA | CHANGES) != ALPHA | CHANGES {
            continue;
        }
        buffer.extend_from_slice(&bytes[from..start]);
        let run = &bytes[start..i];
        for (k, &b) in run.iter().enumerate() {
            let next_is_alnum = run
                .get(k + 1)
                .is_some_and(|&next| CLASSES[usize::from(next)] & ALNUM != 0);
            // `read_as` maps ASCII to ASCII.
            buffer.push(read_as(char::from(b), next_is_alnum) as u8);
        }
        from = i;
    }
    buffer.extend_from_slice(&bytes[from..]);
    *out = String::from_utf8(buffer).expect("step 4 maps ASCII to ASCII");
}

// ---------------------------------------------------------------------------
// Step 5: joins.

/// A separator between two single letters or digits: a space or punctuation.
fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        c == ' ' || c.is_ascii_punctuation()
    } else {
        GeneralCategoryGroup::Punctuation
            .contains(CodePointMapData::<GeneralCategory>::new().get(c))
    }
}

/// Writes into `removed` the byte ranges of `text` that the joins remove, in
/// order: the separators inside each chain of three or more single letters or
/// digits, and each line break between letters with the `-` before it and the
/// indentation after it.
fn find_joins(text: &str, removed: &mut Vec<(usize, usize)>) {
    removed.clear();
    // The chain being read: where its last single ends, and the gaps so far.
    let mut chain_end: Option<usize> = None;
    let mut gaps_start = removed.len();
    let mut singles = 0usize;
    let close = |removed: &mut Vec<(usize, usize)>, gaps_start: usize, singles: usize| {
        if singles < 3 {
            removed.truncate(gaps_start);
        }
    };
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        if c.is_alphanumeric() {
            let single = !prev.is_some_and(char::is_alphanumeric)
                && !next.is_some_and(char::is_alphanumeric);
            if single {
                let continues = chain_end.is_some_and(|end| {
                    let gap = &text[end..at];
                    let count = gap.chars().count();
                    (1..=3).contains(&count) && gap.chars().all(is_separator)
                });
                if continues {
                    removed.push((chain_end.unwrap_or(at), at));
                    singles += 1;
                } else {
                    close(removed, gaps_start, singles);
                    gaps_start = removed.len();
                    singles = 1;
                }
                chain_end = Some(at + c.len_utf8());
            } else {
                close(removed, gaps_start, singles);
                gaps_start = removed.len();
                singles = 0;
                chain_end = None;
            }
        } else if c == '\n' {
            close(removed, gaps_start, singles);
            gaps_start = removed.len();
            singles = 0;
            chain_end = None;
            if let Some(range) = line_break_join(text, at) {
                removed.push(range);
                gaps_start = removed.len();
            }
        } else if chain_end.is_some_and(|end| text[end..at].chars().count() >= 3) {
            // Too far from the last single for it to continue the chain.
            close(removed, gaps_start, singles);
            gaps_start = removed.len();
            singles = 0;
            chain_end = None;
        }
        prev = Some(c);
    }
    close(removed, gaps_start, singles);
}

/// [`find_joins`] on ASCII text, byte by byte, skipping whole words.
fn find_joins_ascii(text: &str, removed: &mut Vec<(usize, usize)>) {
    removed.clear();
    let bytes = text.as_bytes();
    let n = bytes.len();
    let alnum = |i: usize| bytes[i].is_ascii_alphanumeric();
    let mut chain_end: Option<usize> = None;
    let mut gaps_start = 0;
    let mut singles = 0usize;
    let close = |removed: &mut Vec<(usize, usize)>, gaps_start: usize, singles: usize| {
        if singles < 3 {
            removed.truncate(gaps_start);
        }
    };
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            let single = !((i > 0 && alnum(i - 1)) || (i + 1 < n && alnum(i + 1)));
            if single {
                let continues = chain_end.is_some_and(|end| {
                    let gap = &bytes[end..i];
                    (1..=3).contains(&gap.len())
                        && gap.iter().all(|&g| g == b' ' || g.is_ascii_punctuation())
                });
                if continues {
                    removed.push((chain_end.unwrap_or(i), i));
                    singles += 1;
                } else {
                    close(removed, gaps_start, singles);
                    gaps_start = removed.len();
                    singles = 1;
                }
                chain_end = Some(i + 1);
            } else {
                close(removed, gaps_start, singles);
                gaps_start = removed.len();
                singles = 0;
                chain_end = None;
                while i + 1 < n && alnum(i + 1) {
                    i += 1;
                }
            }
        } else if b == b'\n' {
            close(removed, gaps_start, singles);
            gaps_start = removed.len();
            singles = 0;
            chain_end = None;
            if let Some(range) = line_break_join(text, i) {
                removed.push(range);
                gaps_start = removed.len();
            }
        } else if chain_end.is_some_and(|end| i - end >= 3) {
            close(removed, gaps_start, singles);
            gaps_start = removed.len();
            singles = 0;
            chain_end = None;
        }
        i += 1;
    }
    close(removed, gaps_start, singles);
}

/// The range a line break at `at` removes when a letter is on both sides: from
/// the `-` before it (if any) to the letter after its indentation.
fn line_break_join(text: &str, at: usize) -> Option<(usize, usize)> {
    let before = &text[..at];
    let mut back = before.chars().rev();
    let start = match back.next()? {
        '-' if back.next().is_some_and(char::is_alphabetic) => at - 1,
        c if c.is_alphabetic() => at,
        _ => return None,
    };
    let after = &text[at + 1..];
    let indent = after.len() - after.trim_start_matches(' ').len();
    after[indent..]
        .chars()
        .next()
        .filter(|c| c.is_alphabetic())
        .map(|_| (start, at + 1 + indent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;
    use proptest::prelude::*;

    /// The strict forms of `text` (through the standard steps first), the
    /// byte-level paths checked against the character-level ones.
    fn forms(text: &str) -> (String, Option<String>) {
        let standard = normalize(text);
        let mut strict = Strict::default();
        strict.normalize(&standard);
        if standard.is_ascii() {
            let mut general = String::new();
            clean_general(&standard, &mut general);
            let mut base = String::new();
            clean_ascii(&standard, &mut base);
            assert_eq!(base, general, "step 2 on {text:?}");
            let mut a = String::new();
            letters_ascii(&base, &mut a);
            let mut g = String::new();
            letters_general(&base, &mut g);
            assert_eq!(a, g, "step 4 on {text:?}");
            let (mut ascii, mut general) = (Vec::new(), Vec::new());
            find_joins_ascii(&a, &mut ascii);
            find_joins(&a, &mut general);
            assert_eq!(ascii, general, "step 5 on {text:?}");
        }
        (
            strict.plain().to_owned(),
            strict.joined().map(str::to_owned),
        )
    }

    fn keyword(k: &str) -> String {
        strict_keyword(&normalize(k))
    }

    /// Whether `keyword` occurs in either strict form of `text`.
    fn finds(text: &str, k: &str) -> bool {
        let (plain, joined) = forms(text);
        let k = keyword(k);
        plain.contains(&k) || joined.is_some_and(|j| j.contains(&k))
    }

    #[test]
    fn every_disguise_of_the_spec_reads_as_the_keyword() {
        for text in [
            "confidential",
            "CONFIDENTIAL",
            "confidéntial",
            "c\u{303}onfidential",
            "s\u{336}e\u{336}c\u{336}r\u{336}e\u{336}t\u{336} confidential",
            "confi\u{0}dential",
            "confi\u{2800}dential",
            "confi\u{200b}dential",
            "c\u{43e}nfidential",
            "c\u{3bf}nfidential",
            "c\u{1d0f}nfidential",
            "conf\u{131}dential",
            "CONF\u{130}DENTIAL",
            "c0nf1d3nt1al",
            "c0nf1dential",
            "C O N F I D E N T I A L",
            "C.O.N.F.I.D.E.N.T.I.A.L",
            "c-o-n-f-i-d-e-n-t-i-a-l",
            "c_o_n_f_i_d_e_n_t_i_a_l",
            "(c)(o)(n)(f)(i)(d)(e)(n)(t)(i)(a)(l)",
            "c . o . n . f . i . d . e . n . t . i . a . l",
            "c 0 n f 1 d e n t 1 a l",
            "confi-\ndential",
            "confi\ndential",
            "confi-\n    dential",
            "confi-\r\n\tdential",
            "confi\u{2028}dential",
        ] {
            assert!(
                finds(text, "confidential"),
                "{text:?} should read confidential"
            );
        }
        for (text, k) in [
            ("$ecret", "secret"),
            ("p@ssword", "password"),
            ("1nternal", "internal"),
            ("sa1ary", "salary"),
            ("s\u{336}e\u{336}c\u{336}r\u{336}e\u{336}t\u{336}", "secret"),
            ("s|gn", "sign"),
            ("top\nsecret", "secret"),
            ("top\nsecret", "topsecret"),
            ("résumé", "resume"),
            (
                "\u{440}\u{435}\u{441}\u{443}\u{43c}\u{435}",
                "\u{440}\u{435}\u{441}\u{443}\u{43c}\u{435}",
            ),
        ] {
            assert!(finds(text, k), "{text:?} should contain {k:?}");
        }
    }

    #[test]
    fn ordinary_text_is_not_rewritten_into_matches() {
        for (text, k) in [
            ("con fidential", "confidential"),
            ("confi\tdential", "confidential"),
            ("price: 500 dollars, 1 337 units", "soo"),
            ("2024-05-17", "zoz"),
        ] {
            assert!(!finds(text, k), "{text:?} should not contain {k:?}");
        }
        // A number, a date or a price is left alone.
        assert_eq!(
            forms("call 555-0100 on 2024-05-17 for $500").0,
            "caii 555-0100 on 2024-05-17 for $500"
        );
        // A trailing symbol keeps its place.
        assert_eq!(forms("secret!").0, "secret!");
        assert_eq!(forms("$$ecret").0, "$secret");
    }

    #[test]
    fn blanks_collapse_and_line_breaks_read_as_newline() {
        assert_eq!(forms("a \t\u{a0} b").0, "a b");
        assert_eq!(forms("a\r\nb\rc\u{2029}d").0, "a\nb\nc\nd");
        assert_eq!(forms("a \n  b").0, "a \n b");
        assert_eq!(forms("x\u{1}\u{7f}y\u{85}z").0, "xyz");
    }

    #[test]
    fn joins_need_three_singles_and_short_separators() {
        assert_eq!(forms("a b").1, None);
        assert_eq!(forms("i am a b c").1.as_deref(), Some("i am abc"));
        assert_eq!(
            forms("a    b    c").1.as_deref(),
            Some("abc"),
            "blanks read as one space"
        );
        assert_eq!(forms("a ---- b ---- c").1, None);
        assert_eq!(forms("(a)(b)(c)").1.as_deref(), Some("(abc)"));
        assert_eq!(
            forms("ab c d e").1.as_deref(),
            Some("ab cde"),
            "`ab` is no single letter"
        );
        assert_eq!(forms("one\ntwo").1.as_deref(), Some("onetwo"));
        assert_eq!(forms("one.\ntwo").1, None);
        assert_eq!(forms("one\n2").1, None);
    }

    #[test]
    fn keywords_take_steps_one_to_four() {
        assert_eq!(keyword("Confidential"), "confidentiai");
        assert_eq!(keyword("c o n"), "c o n");
        assert_eq!(keyword("p@ss"), "pass");
        assert_eq!(keyword("\u{301}\u{2800}"), "");
        assert_eq!(keyword("c\u{43e}nfidential"), keyword("confidential"));
    }

    #[test]
    fn ascii_letters_stay_ascii_letters() {
        // The confusables data maps `m` to `rn`: ASCII must not go through it.
        assert_eq!(forms("memo").0, "memo");
        assert_eq!(forms("rn").0, "rn");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The byte-level steps equal the character-level ones on ASCII.
        #[test]
        fn ascii_paths_equal_general_paths(text in "[ -~\t\n\r\u{0}\u{1}\u{7f}]{0,80}|([a-c1 .\n-]{1,3}){0,30}") {
            forms(&text);
        }

        /// The strict steps never panic and keep the text valid on anything.
        #[test]
        fn any_text_normalizes(text in any::<String>()) {
            let (plain, joined) = forms(&text);
            if let Some(joined) = joined {
                prop_assert!(joined.len() < plain.len());
            }
        }
    }
}
