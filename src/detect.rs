//! The built-in detectors of `when.detect`: personal data (e-mail addresses,
//! card numbers, IBANs, US social security numbers) and secrets (private
//! keys, cloud and SaaS API keys, JWTs), each found by a regular expression
//! and, where the format has one, checked by its validation (Luhn and the
//! card networks' prefixes, the IBAN registry's lengths and mod-97, the SSN
//! ranges, a JWT header that decodes to JSON with `alg`), so that a 16-digit
//! order number is not a card.
//!
//! Detectors read a message after [`crate::normalize::for_detectors`]
//! (default-ignorable code points removed, NFKC; no case folding, so
//! full-width digits are digits and `AKIA` keeps its case). A cheap
//! prefilter runs first: one pass over the bytes for digits and `@`, and one
//! Aho-Corasick scan for the secrets' literal prefixes, so prose with none
//! of them costs almost nothing. A detector says whether it found an
//! instance, never what it found.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use regex::Regex;

use crate::names::Detector;

/// A set of detectors, one bit each in the order of [`Detector::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DetectorSet(u16);

impl DetectorSet {
    /// No detector.
    pub const EMPTY: DetectorSet = DetectorSet(0);

    fn bit(detector: Detector) -> u16 {
        let index = Detector::ALL
            .iter()
            .position(|d| *d == detector)
            .unwrap_or_default();
        1 << index
    }

    /// This set with `detector` in it.
    pub fn with(self, detector: Detector) -> Self {
        DetectorSet(self.0 | Self::bit(detector))
    }

    /// Whether `detector` is in the set.
    pub fn contains(self, detector: Detector) -> bool {
        self.0 & Self::bit(detector) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The detectors in both sets.
    pub fn intersection(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 & other.0)
    }

    /// Every detector of either set.
    pub fn union(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 | other.0)
    }

    /// The detectors in the set, in the order of [`Detector::ALL`];
    /// [`DetectorSet::names`] sorts them by name.
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// The names of the detectors in the set, sorted.
    pub fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.iter().map(Detector::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl FromIterator<Detector> for DetectorSet {
    fn from_iter<I: IntoIterator<Item = Detector>>(iter: I) -> Self {
        iter.into_iter().fold(DetectorSet::EMPTY, DetectorSet::with)
    }
}

/// The detectors of `wanted` that find an instance in `text` (normalized by
/// [`crate::normalize::for_detectors`]).
pub fn detect(text: &str, wanted: DetectorSet) -> DetectorSet {
    if wanted.is_empty() {
        return DetectorSet::EMPTY;
    }
    let possible = prefilter(text).intersection(wanted);
    possible.iter().filter(|d| finds(*d, text)).collect()
}

/// The literal starts of the secrets, with the detectors each may begin.
const PREFIXES: &[(&str, &[Detector])] = &[
    ("PRIVATE KEY-----", &[Detector::PrivateKey]),
    ("AKIA", &[Detector::AwsAccessKeyId]),
    ("ASIA", &[Detector::AwsAccessKeyId]),
    ("ABIA", &[Detector::AwsAccessKeyId]),
    ("ACCA", &[Detector::AwsAccessKeyId]),
    ("ghp_", &[Detector::GithubToken]),
    ("gho_", &[Detector::GithubToken]),
    ("ghu_", &[Detector::GithubToken]),
    ("ghs_", &[Detector::GithubToken]),
    ("ghr_", &[Detector::GithubToken]),
    ("github_pat_", &[Detector::GithubToken]),
    ("glpat-", &[Detector::GitlabToken]),
    ("xoxb-", &[Detector::SlackToken]),
    ("xoxp-", &[Detector::SlackToken]),
    ("xoxa-", &[Detector::SlackToken]),
    ("xoxr-", &[Detector::SlackToken]),
    ("xoxs-", &[Detector::SlackToken]),
    ("sk_live_", &[Detector::StripeKey]),
    ("rk_live_", &[Detector::StripeKey]),
    ("T3BlbkFJ", &[Detector::OpenaiApiKey]),
    ("sk-ant-", &[Detector::AnthropicApiKey]),
    ("AIza", &[Detector::GoogleApiKey]),
    ("eyJ", &[Detector::Jwt]),
];

static PREFIX_SCAN: LazyLock<AhoCorasick> = LazyLock::new(|| {
    // Leftmost-first lets the search use its vectorized prefilter.
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(PREFIXES.iter().map(|(p, _)| *p))
        .expect("short literal prefixes always build an automaton")
});

/// The detectors that can match `text` at all: `credit_card` only where 13
/// digits follow each other (single spaces or hyphens between them allowed),
/// `us_ssn` only where runs of 3, 2 and 4 digits do, `iban` only where two
/// capital letters are followed by two digits, `email` only with an `@`,
/// each secret only where its literal start occurs.
fn prefilter(text: &str) -> DetectorSet {
    let bytes = text.as_bytes();
    let mut possible = DetectorSet::EMPTY;
    let numbers = number_shapes(bytes);
    if numbers.card {
        possible = possible.with(Detector::CreditCard);
    }
    if numbers.ssn {
        possible = possible.with(Detector::UsSsn);
    }
    if numbers.iban {
        possible = possible.with(Detector::Iban);
    }
    if bytes.contains(&b'@') {
        possible = possible.with(Detector::Email);
    }
    // Non-overlapping: no prefix is part of another, so none is hidden by
    // a match before it, and this search can use the automaton's prefilter.
    for m in PREFIX_SCAN.find_iter(text) {
        for d in PREFIXES[m.pattern().as_usize()].1 {
            possible = possible.with(*d);
        }
    }
    possible
}

/// Which number detectors the digits of a text leave possible.
#[derive(Debug, Default, PartialEq, Eq)]
struct NumberShapes {
    card: bool,
    ssn: bool,
    iban: bool,
}

/// The numbers of a text, each a run of digits or several joined by a
/// single space or hyphen, read by jumping from digit to digit: whether one
/// holds 13 digits (a card), three consecutive runs of 3, 2 and 4 digits (an
/// SSN), or starts with two digits right after two capital letters (an IBAN).
fn number_shapes(bytes: &[u8]) -> NumberShapes {
    let mut shapes = NumberShapes::default();
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(u8::is_ascii_digit) {
        let start = i + offset;
        if start >= 2
            && bytes[start - 2].is_ascii_uppercase()
            && bytes[start - 1].is_ascii_uppercase()
            && bytes.get(start + 1).is_some_and(u8::is_ascii_digit)
        {
            shapes.iban = true;
        }
        let mut digits = 0;
        let mut runs = [0usize; 3];
        let mut j = start;
        loop {
            let run = bytes[j..].iter().take_while(|b| b.is_ascii_digit()).count();
            digits += run;
            runs = [runs[1], runs[2], run];
            shapes.ssn |= runs == [3, 2, 4];
            j += run;
            let joined = matches!(bytes.get(j), Some(b' ' | b'-'))
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit);
            if !joined {
                break;
            }
            j += 1;
        }
        shapes.card |= digits >= 13;
        i = j;
    }
    shapes
}

/// A detector's regular expression: a literal of this module, which the
/// tests compile.
macro_rules! pattern {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($re).expect("the module's patterns are valid"));
    };
}

pattern!(EMAIL, r"(?i)\b[a-z0-9._%+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,}\b");
pattern!(CARD, r"\b[0-9](?:[ -]?[0-9]){12,18}\b");
pattern!(
    IBAN,
    r"\b[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b"
);
pattern!(SSN, r"\b([0-9]{3})[- ]([0-9]{2})[- ]([0-9]{4})\b");
pattern!(
    PRIVATE_KEY,
    r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----"
);
pattern!(AWS, r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b");
pattern!(
    GITHUB,
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b"
);
pattern!(GITLAB, r"\bglpat-[A-Za-z0-9_-]{20,}");
pattern!(SLACK, r"\bxox[bpars]-[A-Za-z0-9-]{10,}");
pattern!(STRIPE, r"\b[sr]k_live_[A-Za-z0-9]{24,}");
pattern!(
    OPENAI,
    r"\bsk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]*"
);
pattern!(ANTHROPIC, r"\bsk-ant-[A-Za-z0-9_-]{80,}");
pattern!(GOOGLE, r"\bAIza[A-Za-z0-9_-]{35,}");
pattern!(
    JWT,
    r"\b(eyJ[A-Za-z0-9_-]+)\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
);

/// Whether `detector` finds an instance in `text`.
fn finds(detector: Detector, text: &str) -> bool {
    match detector {
        Detector::Email => EMAIL.is_match(text),
        Detector::CreditCard => CARD.find_iter(text).any(|m| is_card(m.as_str())),
        Detector::Iban => IBAN.find_iter(text).any(|m| is_iban(m.as_str())),
        Detector::UsSsn => SSN.captures_iter(text).any(|c| {
            let part = |i: usize| c.get(i).map_or("", |m| m.as_str());
            is_ssn(part(1), part(2), part(3))
        }),
        Detector::PrivateKey => PRIVATE_KEY.is_match(text),
        Detector::AwsAccessKeyId => AWS.is_match(text),
        Detector::GithubToken => GITHUB.is_match(text),
        Detector::GitlabToken => GITLAB.is_match(text),
        Detector::SlackToken => SLACK.is_match(text),
        Detector::StripeKey => STRIPE.is_match(text),
        Detector::OpenaiApiKey => OPENAI.is_match(text),
        Detector::AnthropicApiKey => ANTHROPIC.is_match(text),
        // Exactly 35 characters after `AIza`: a longer run is something else.
        Detector::GoogleApiKey => GOOGLE.find_iter(text).any(|m| m.len() == 39),
        Detector::Jwt => JWT
            .captures_iter(text)
            .any(|c| c.get(1).is_some_and(|h| is_jwt_header(h.as_str()))),
    }
}

/// 13 to 19 digits (separators dropped) that pass Luhn, with a known
/// network's prefix.
fn is_card(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    (13..=19).contains(&digits.len()) && luhn(&digits) && known_network(&digits)
}

/// The Luhn checksum over `digits`, the check digit last.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Visa 4, Mastercard 51–55 and 2221–2720, Amex 34/37, Discover
/// 6011/65/644–649, JCB 3528–3589, Diners 36/38/300–305, UnionPay 62.
fn known_network(digits: &[u32]) -> bool {
    let prefix = |n: usize| digits.iter().take(n).fold(0u32, |acc, d| acc * 10 + d);
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    p1 == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || p2 == 65
        || (644..=649).contains(&p3)
        || (3528..=3589).contains(&p4)
        || p2 == 36
        || p2 == 38
        || (300..=305).contains(&p3)
        || p2 == 62
}

/// An IBAN of a registered country: its length and mod-97 checksum, by the
/// registry data of the `iban_validate` crate.
fn is_iban(candidate: &str) -> bool {
    let compact: String = candidate.chars().filter(|c| *c != ' ').collect();
    compact.parse::<iban::Iban>().is_ok()
}

/// Area not 000, 666 or 900–999; group not 00; serial not 0000.
fn is_ssn(area: &str, group: &str, serial: &str) -> bool {
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000"
}

/// A JWT header: base64url that decodes to a JSON object with `alg`.
fn is_jwt_header(segment: &str) -> bool {
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("alg")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&'static str> {
        let all: DetectorSet = Detector::ALL.into_iter().collect();
        detect(text, all).names()
    }

    #[test]
    fn every_pattern_compiles() {
        for pattern in [
            &EMAIL,
            &CARD,
            &IBAN,
            &SSN,
            &PRIVATE_KEY,
            &AWS,
            &GITHUB,
            &GITLAB,
            &SLACK,
            &STRIPE,
            &OPENAI,
            &ANTHROPIC,
            &GOOGLE,
            &JWT,
        ] {
            assert!(!pattern.as_str().is_empty());
        }
        assert_eq!(PREFIX_SCAN.patterns_len(), PREFIXES.len());
    }

    #[test]
    fn each_detector_finds_its_format() {
        let jwt_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let cases: Vec<(String, &str)> = vec![
            ("write to jane.doe@example.co.uk today".into(), "email"),
            ("card 4111 1111 1111 1111 exp 12/29".into(), "credit_card"),
            ("card 5500-0000-0000-0004".into(), "credit_card"),
            ("amex 378282246310005".into(), "credit_card"),
            ("pay DE89 3704 0044 0532 0130 00 now".into(), "iban"),
            ("GB82WEST12345698765432".into(), "iban"),
            ("ssn 123-45-6789".into(), "us_ssn"),
            ("ssn 123 45 6789".into(), "us_ssn"),
            ("-----BEGIN PRIVATE KEY-----\nMIIE".into(), "private_key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----".into(), "private_key"),
            ("key AKIAIOSFODNN7EXAMPLE here".into(), "aws_access_key_id"),
            (format!("token ghp_{}", "a".repeat(36)), "github_token"),
            (format!("github_pat_{}", "B_".repeat(41)), "github_token"),
            (format!("glpat-{}", "x".repeat(20)), "gitlab_token"),
            ("xoxb-1234567890-abcdef".into(), "slack_token"),
            (format!("sk_live_{}", "9".repeat(24)), "stripe_key"),
            (format!("sk-proj-abc{}def", "T3BlbkFJ"), "openai_api_key"),
            (
                format!("sk-ant-api03-{}", "Q".repeat(80)),
                "anthropic_api_key",
            ),
            (format!("AIza{}", "S".repeat(35)), "google_api_key"),
            (format!("Bearer {jwt_header}.eyJzdWIiOiIxIn0.sig"), "jwt"),
        ];
        for (text, name) in &cases {
            assert_eq!(found(text), [*name], "{text}");
        }
    }

    #[test]
    fn look_alikes_that_fail_validation_do_not_match() {
        for text in [
            // 16 digits that fail Luhn: an order number.
            "order 1234 5678 9012 3456 shipped",
            // Luhn-valid, but no card network starts with 9.
            "ref 9999 9999 9999 9995",
            // A wrong IBAN checksum, and an unknown country.
            "DE88 3704 0044 0532 0130 00",
            "XX89 3704 0044 0532 0130 00",
            // SSN ranges.
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            // Keys one character short.
            "AKIAIOSFODNN7EXAMPL",
            "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "glpat-xxxxxxxxxxxxxxxxxxx",
            "sk_live_99999999999999999999999",
            "AIzaSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS",
            // A JWT-shaped string whose header is not JSON with `alg`.
            "eyJub3RoaW5nIjoxfQ.eyJzdWIiOiIxIn0.sig",
            // Prose.
            "Please summarize the attached quarterly report for the board.",
            "The meeting is at 10:30 on 2026-12-03, room 4.",
            "an address like name at example dot com",
        ] {
            assert_eq!(found(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn full_width_digits_and_hidden_characters_do_not_hide_a_card() {
        let disguised = "card \u{ff14}\u{ff11}\u{ff11}\u{ff11} 1111 11\u{200b}11 1111";
        assert!(found(disguised).is_empty(), "without normalization");
        let text = crate::normalize::for_detectors(disguised);
        let all: DetectorSet = Detector::ALL.into_iter().collect();
        assert_eq!(detect(&text, all).names(), ["credit_card"]);
        // Case is kept: a lowercase `akia…` is not an AWS key id.
        assert_eq!(crate::normalize::for_detectors("AKIA é"), "AKIA é");
    }

    #[test]
    fn only_the_detectors_asked_for_run() {
        let text = "4111111111111111 and jane@example.com";
        let cards: DetectorSet = [Detector::CreditCard].into_iter().collect();
        assert_eq!(detect(text, cards).names(), ["credit_card"]);
        assert!(detect(text, DetectorSet::EMPTY).is_empty());
    }

    #[test]
    fn numbers_too_short_for_a_card_or_not_shaped_like_an_ssn_skip_those_detectors() {
        let shapes = |t: &str| number_shapes(t.as_bytes());
        assert_eq!(
            shapes("keep it under 300 words, 2026-12-03"),
            NumberShapes::default()
        );
        assert!(shapes("4111 1111 1111 1111").card);
        assert!(shapes("4111-1111-1111-1").card);
        assert!(
            !shapes("4111  1111 1111 1111").card,
            "two spaces break a number"
        );
        assert!(shapes("ssn 123-45-6789.").ssn);
        assert!(shapes("123 45 6789").ssn);
        assert!(!shapes("1234-45-6789").ssn);
        assert!(!shapes("415-555-2671").ssn);
        assert!(prefilter("DE89 3704").contains(Detector::Iban));
        assert!(!prefilter("De89 3704").contains(Detector::Iban));
    }

    #[test]
    fn prose_without_digits_at_signs_or_prefixes_passes_the_prefilter_empty() {
        assert!(prefilter("a plain sentence with no numbers in it").is_empty());
        assert!(prefilter("mail me").is_empty());
        assert!(prefilter("x@y").contains(Detector::Email));
    }
}
