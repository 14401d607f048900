//! Validation of a whole policy: every file through the schema, then the checks
//! that need more than one value (ids across files, `defaults` in one file only,
//! bounds, prices, keywords, patterns and model globs), then the overlay and the
//! version.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use sha2::{Digest, Sha256};

use super::yaml::{DocumentSchema, Positions, parse_value, schema_violations, validator_for};
use super::{
    Defaults, EffectiveDefaults, LoadError, LoadErrors, Located, Location, PolicyFile, PolicySet,
    Position, Refused, Rule, RuleSpec, SourceFile, SourceInfo,
};
use crate::detect::DetectorSet;
use crate::env::Env;
use crate::names::{Detector, Route};
use serde_json::Value;

static POLICY_SCHEMA: LazyLock<DocumentSchema> = LazyLock::new(validator_for::<PolicyFile>);

/// The text of a file, or an error at the first byte that is not UTF-8.
pub(crate) fn utf8_text<'a>(path: &str, bytes: &'a [u8]) -> Result<&'a str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError::at(
            path,
            Position { line, column },
            "the file is not valid UTF-8",
        )
    })
}

/// What could be read of one file: its defaults and every rule that is valid on
/// its own, so that a file with one bad rule still has its other rules checked.
struct ParsedFile<'a> {
    file: &'a SourceFile,
    positions: Positions,
    defaults: Option<Defaults>,
    rules: Vec<(usize, Rule)>,
}

fn parse_file<'a>(
    file: &'a SourceFile,
    report: &mut dyn FnMut(LoadError),
) -> Option<ParsedFile<'a>> {
    let text = utf8_text(&file.path, &file.bytes)
        .map_err(&mut *report)
        .ok()?;
    let (value, positions) = parse_value(&file.path, text)
        .map_err(|es| es.into_iter().for_each(&mut *report))
        .ok()?;
    let violations = schema_violations(&file.path, &value, &positions, &POLICY_SCHEMA);
    let clean = |pointer: &str| {
        !violations.iter().any(|(p, _)| {
            p == pointer
                || p.strip_prefix(pointer)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    let defaults = value
        .get("defaults")
        .filter(|_| clean("/defaults"))
        .and_then(|v| serde_json::from_value::<Defaults>(v.clone()).ok());
    let rules = match value.get("rules").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .enumerate()
            .filter(|(r, _)| clean(&format!("/rules/{r}")))
            .filter_map(|(r, v)| {
                serde_json::from_value::<Rule>(v.clone())
                    .ok()
                    .map(|rule| (r, rule))
            })
            .collect(),
        _ => Vec::new(),
    };
    for (_, e) in violations {
        report(e);
    }
    Some(ParsedFile {
        file,
        positions,
        defaults,
        rules,
    })
}

pub(crate) fn validate(files: &[SourceFile], env: &Env) -> Result<PolicySet, Refused> {
    if files.is_empty() {
        return Err(Refused {
            errors: LoadError::whole("policy", "no policy files").into(),
            rules: Vec::new(),
        });
    }
    let mut errors = Vec::new();

    let mut docs: Vec<ParsedFile<'_>> = Vec::with_capacity(files.len());
    for file in files {
        if let Some(parsed) = parse_file(file, &mut |e| errors.push(e)) {
            docs.push(parsed);
        }
    }

    // `defaults` in one file at most.
    let mut defaults_file: Option<(&str, &Defaults, Location)> = None;
    for doc in &docs {
        let file = doc.file;
        let Some(defaults) = &doc.defaults else {
            continue;
        };
        let at = Location {
            path: file.path.clone(),
            position: doc.positions.key("/defaults"),
        };
        match &defaults_file {
            Some((_, _, first)) => errors.push(LoadError::at_location(
                &at,
                format!("`defaults` is already set in {first}; only one file may carry defaults"),
            )),
            None => defaults_file = Some((&file.path, defaults, at)),
        }
    }

    let defaults =
        match EffectiveDefaults::resolve(defaults_file.as_ref().map(|(p, d, _)| (*p, *d)), env) {
            Ok(d) => Some(d),
            Err(es) => {
                es.into_iter().for_each(|e| errors.push(e));
                None
            }
        };
    // When the price variable itself is invalid, it is reported as such; do not
    // also blame every `estimated_usd` condition.
    let has_price = match &defaults {
        Some(d) => d.input_usd_per_1m_tokens.value.is_some(),
        None => true,
    };

    let mut first_ids: HashMap<&str, Location> = HashMap::new();
    let mut rules = Vec::new();
    for doc in &docs {
        let file = doc.file;
        let pos = &doc.positions;
        let located = |pointer: &str| Location {
            path: file.path.clone(),
            position: pos.value(pointer),
        };
        for (r, rule) in &doc.rules {
            let ptr = format!("/rules/{r}");
            let id_at = located(&format!("{ptr}/id"));
            match first_ids.get(rule.id.as_str()) {
                Some(first) => errors.push(LoadError::at_location(
                    &id_at,
                    format!("duplicate rule id `{}`: first defined at {first}", rule.id),
                )),
                None => {
                    first_ids.insert(&rule.id, id_at);
                }
            }
            let when = rule.when.clone().unwrap_or_default();

            // Keywords, patterns and globs are kept as written, with where;
            // whether each normalizes or compiles is the compiler's to say.
            let listed = |list: &Option<Vec<String>>, key: &str| -> Vec<Located<String>> {
                list.iter()
                    .flatten()
                    .enumerate()
                    .map(|(k, value)| Located {
                        value: value.clone(),
                        at: located(&format!("{ptr}/when/{key}/{k}")),
                    })
                    .collect()
            };
            let keywords = listed(&when.keywords, "keywords");
            let patterns = listed(&when.patterns, "patterns");
            let model = listed(&when.model, "model");
            let detect = listed(&when.detect, "detect");
            // The schema has checked every word; a word it let through that
            // names nothing would be a bug, reported as an error all the same.
            let mut detectors = DetectorSet::EMPTY;
            for word in &detect {
                match word.value.as_str() {
                    "pii" => detectors = detectors.union(Detector::PII.into_iter().collect()),
                    "secrets" => {
                        detectors = detectors
                            .union(Detector::ALL.into_iter().filter(|d| !d.is_pii()).collect())
                    }
                    other => match other.parse::<Detector>() {
                        Ok(d) => detectors = detectors.with(d),
                        Err(e) => errors.push(LoadError::at_location(&word.at, e.to_string())),
                    },
                }
            }

            if let Some(b) = &when.input_chars
                && let (Some(min), Some(max)) = (b.min, b.max)
                && min > max
            {
                errors.push(LoadError::at_location(
                    &located(&format!("{ptr}/when/input_chars")),
                    format!("`input_chars` has min {min} greater than max {max}"),
                ));
            }
            if let Some(b) = &when.estimated_usd {
                if let (Some(min), Some(max)) = (b.min, b.max)
                    && min > max
                {
                    errors.push(LoadError::at_location(
                        &located(&format!("{ptr}/when/estimated_usd")),
                        format!("`estimated_usd` has min {min} greater than max {max}"),
                    ));
                }
                if !has_price {
                    errors.push(LoadError::at(
                            &file.path,
                            pos.key(&format!("{ptr}/when/estimated_usd")),
                            "`estimated_usd` needs a price: set `defaults.pricing.input_usd_per_1m_tokens` \
                             or POLICY_INPUT_USD_PER_1M_TOKENS",
                        ),
                    );
                }
            }

            if rule.sensitive && rule.route != Route::Local {
                errors.push(LoadError::at_location(
                    &located(&format!("{ptr}/route")),
                    format!(
                        "rule `{}` is sensitive: it must route `local`, not `{}`",
                        rule.id, rule.route
                    ),
                ));
            }

            rules.push(RuleSpec {
                id: rule.id.clone(),
                description: rule.description.clone(),
                route: rule.route,
                reason: rule.reason.clone().unwrap_or_else(|| rule.id.clone()),
                sensitive: rule.sensitive,
                at: located(&ptr),
                keywords,
                keyword_match: when.keyword_match.unwrap_or_default(),
                keyword_normalization: when.keyword_normalization.unwrap_or_default(),
                patterns,
                detect,
                detectors,
                scope: when.scope.unwrap_or_default(),
                input_chars: when.input_chars,
                estimated_usd: when.estimated_usd,
                model,
                has_images: when.has_images,
            });
        }
    }

    let Some(defaults) = defaults.filter(|_| errors.is_empty()) else {
        return Err(Refused {
            errors: LoadErrors::in_load_order(errors, files),
            rules,
        });
    };
    Ok(PolicySet {
        sources: files
            .iter()
            .map(|f| SourceInfo {
                path: Arc::clone(&f.path),
                sha256: hex::encode(Sha256::digest(&f.bytes)),
            })
            .collect(),
        rules,
        version: version(files, &defaults),
        defaults,
    })
}

/// The version: SHA-256 over each file's name and bytes in load order, then the
/// effective defaults. Every field is length-prefixed or fixed-size, so no two
/// different policies share an encoding.
pub(crate) fn version(files: &[SourceFile], defaults: &EffectiveDefaults) -> String {
    let mut h = Sha256::new();
    h.update(b"policy-mesh policy v1\0");
    h.update((files.len() as u64).to_le_bytes());
    for f in files {
        h.update((f.name.len() as u64).to_le_bytes());
        h.update(f.name.as_bytes());
        h.update((f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
    }
    h.update([match defaults.provider.value {
        crate::names::Route::Local => 0u8,
        crate::names::Route::Public => 1u8,
    }]);
    match defaults.input_usd_per_1m_tokens.value {
        Some(price) => {
            h.update([1u8]);
            h.update(price.to_bits().to_le_bytes());
        }
        None => h.update([0u8]),
    }
    h.update(defaults.chars_per_token.value.to_bits().to_le_bytes());
    hex::encode(h.finalize())
}
