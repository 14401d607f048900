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
    Position, Rule, RuleSpec, SourceFile, SourceInfo,
};
use crate::config::Env;
use serde_json::Value;

static POLICY_SCHEMA: LazyLock<DocumentSchema> = LazyLock::new(validator_for::<PolicyFile>);

/// Errors with the order they are reported in: files in load order, then position;
/// variables last.
struct Errors(Vec<(usize, LoadError)>);

impl Errors {
    fn push(&mut self, file: usize, e: LoadError) {
        self.0.push((file, e));
    }

    fn into_sorted(mut self) -> LoadErrors {
        self.0
            .sort_by(|(fa, a), (fb, b)| fa.cmp(fb).then(a.position.cmp(&b.position)));
        LoadErrors(self.0.into_iter().map(|(_, e)| e).collect())
    }
}

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
    index: usize,
    file: &'a SourceFile,
    positions: Positions,
    defaults: Option<Defaults>,
    rules: Vec<(usize, Rule)>,
}

fn parse_file<'a>(
    index: usize,
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
        index,
        file,
        positions,
        defaults,
        rules,
    })
}

pub(crate) fn validate(files: &[SourceFile], env: &Env) -> Result<PolicySet, LoadErrors> {
    if files.is_empty() {
        return Err(LoadError::whole("policy", "no policy files").into());
    }
    const VARIABLES: usize = usize::MAX;
    let mut errors = Errors(Vec::new());

    let mut docs: Vec<ParsedFile<'_>> = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        if let Some(parsed) = parse_file(i, file, &mut |e| errors.push(i, e)) {
            docs.push(parsed);
        }
    }

    // `defaults` in one file at most.
    let mut defaults_file: Option<(&str, &Defaults, Location)> = None;
    for doc in &docs {
        let (i, file) = (&doc.index, doc.file);
        let Some(defaults) = &doc.defaults else {
            continue;
        };
        let at = Location {
            path: file.path.clone(),
            position: doc.positions.key("/defaults"),
        };
        match &defaults_file {
            Some((_, _, first)) => errors.push(
                *i,
                LoadError::at_location(
                    &at,
                    format!(
                        "`defaults` is already set in {first}; only one file may carry defaults"
                    ),
                ),
            ),
            None => defaults_file = Some((&file.path, defaults, at)),
        }
    }

    let defaults =
        match EffectiveDefaults::resolve(defaults_file.as_ref().map(|(p, d, _)| (*p, *d)), env) {
            Ok(d) => Some(d),
            Err(es) => {
                es.into_iter().for_each(|e| errors.push(VARIABLES, e));
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
        let (i, file) = (&doc.index, doc.file);
        let pos = &doc.positions;
        let located = |pointer: &str| Location {
            path: file.path.clone(),
            position: pos.value(pointer),
        };
        for (r, rule) in &doc.rules {
            let ptr = format!("/rules/{r}");
            let id_at = located(&format!("{ptr}/id"));
            match first_ids.get(rule.id.as_str()) {
                Some(first) => errors.push(
                    *i,
                    LoadError::at_location(
                        &id_at,
                        format!("duplicate rule id `{}`: first defined at {first}", rule.id),
                    ),
                ),
                None => {
                    first_ids.insert(&rule.id, id_at);
                }
            }
            let when = rule.when.clone().unwrap_or_default();

            let mut keywords = Vec::new();
            for (k, keyword) in when.keywords.iter().flatten().enumerate() {
                let at = located(&format!("{ptr}/when/keywords/{k}"));
                if crate::normalize::normalize(keyword).is_empty() {
                    errors.push(
                        *i,
                        LoadError::at_location(
                            &at,
                            format!("keyword {keyword:?} is empty once case, width and invisible characters are ignored"),
                        ),
                    );
                }
                keywords.push(Located {
                    value: keyword.clone(),
                    at,
                });
            }

            let mut patterns = Vec::new();
            for (k, pattern) in when.patterns.iter().flatten().enumerate() {
                let at = located(&format!("{ptr}/when/patterns/{k}"));
                if let Err(msg) = crate::compiler::check_pattern(pattern) {
                    // The regex crate explains over several lines; keep the one that says what is wrong.
                    let msg = msg
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("error: "))
                        .unwrap_or(msg.lines().next().unwrap_or_default())
                        .to_owned();
                    errors.push(
                        *i,
                        LoadError::at_location(&at, format!("invalid regex {pattern:?}: {msg}")),
                    );
                }
                patterns.push(Located {
                    value: pattern.clone(),
                    at,
                });
            }

            let mut model = Vec::new();
            for (k, glob) in when.model.iter().flatten().enumerate() {
                let at = located(&format!("{ptr}/when/model/{k}"));
                if let Err(why) = crate::compiler::check_glob(glob) {
                    errors.push(
                        *i,
                        LoadError::at_location(&at, format!("invalid glob {glob:?}: {why}")),
                    );
                }
                model.push(Located {
                    value: glob.clone(),
                    at,
                });
            }

            if let Some(b) = &when.input_chars
                && let (Some(min), Some(max)) = (b.min, b.max)
                && min > max
            {
                errors.push(
                    *i,
                    LoadError::at_location(
                        &located(&format!("{ptr}/when/input_chars")),
                        format!("`input_chars` has min {min} greater than max {max}"),
                    ),
                );
            }
            if let Some(b) = &when.estimated_usd {
                if let (Some(min), Some(max)) = (b.min, b.max)
                    && min > max
                {
                    errors.push(
                        *i,
                        LoadError::at_location(
                            &located(&format!("{ptr}/when/estimated_usd")),
                            format!("`estimated_usd` has min {min} greater than max {max}"),
                        ),
                    );
                }
                if !has_price {
                    errors.push(
                        *i,
                        LoadError::at(
                            &file.path,
                            pos.key(&format!("{ptr}/when/estimated_usd")),
                            "`estimated_usd` needs a price: set `defaults.pricing.input_usd_per_1m_tokens` \
                             or POLICY_INPUT_USD_PER_1M_TOKENS",
                        ),
                    );
                }
            }

            rules.push(RuleSpec {
                id: rule.id.clone(),
                description: rule.description.clone(),
                route: rule.route,
                reason: rule.reason.clone().unwrap_or_else(|| rule.id.clone()),
                at: located(&ptr),
                keywords,
                keyword_match: when.keyword_match.unwrap_or_default(),
                patterns,
                scope: when.scope.unwrap_or_default(),
                input_chars: when.input_chars,
                estimated_usd: when.estimated_usd,
                model,
            });
        }
    }

    let Some(defaults) = defaults else {
        return Err(errors.into_sorted());
    };
    if !errors.0.is_empty() {
        return Err(errors.into_sorted());
    }
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
        super::Route::Local => 0u8,
        super::Route::Public => 1u8,
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
