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
    Position, ProviderDecl, ProviderEntry, Refused, Rule, RuleSpec, SourceFile, SourceInfo,
};
use crate::detect::DetectorSet;
use crate::env::Env;
use crate::names::{Api, Detector, ProviderId, Route};
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
    providers: Vec<(usize, ProviderEntry)>,
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
    let rules = entries::<Rule>(&value, "rules", &clean);
    let providers = entries::<ProviderEntry>(&value, "providers", &clean);
    for (_, e) in violations {
        report(e);
    }
    Some(ParsedFile {
        file,
        positions,
        defaults,
        providers,
        rules,
    })
}

/// The items of the list at `key` that the schema found nothing wrong in
/// (`clean` of their pointer), each with its index.
fn entries<T: serde::de::DeserializeOwned>(
    value: &Value,
    key: &str,
    clean: &dyn Fn(&str) -> bool,
) -> Vec<(usize, T)> {
    let Some(items) = value.get(key).and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| clean(&format!("/{key}/{i}")))
        .filter_map(|(i, v)| serde_json::from_value::<T>(v.clone()).ok().map(|t| (i, t)))
        .collect()
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

    let providers = providers(&docs, &mut errors);
    let public_id = crate::config::public_provider(env).unwrap_or(Api::Openai);
    let targets = Targets {
        public_id: public_id.as_str(),
        providers: &providers,
    };
    let default_fallback: Vec<Located<String>> = defaults_file
        .as_ref()
        .and_then(|(path, d, _)| {
            let doc = docs.iter().find(|doc| &*doc.file.path == *path)?;
            Some(
                d.fallback
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(k, name)| Located {
                        value: name.clone(),
                        at: Location {
                            path: doc.file.path.clone(),
                            position: doc.positions.value(&format!("/defaults/fallback/{k}")),
                        },
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    for name in &default_fallback {
        if let Err(e) = targets.resolve(name) {
            errors.push(e);
        }
    }

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
            let client = listed(&when.client, "client");
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

            let route = Located {
                value: rule.route.clone(),
                at: located(&format!("{ptr}/route")),
            };
            let fallback: Vec<Located<String>> = listed(&rule.fallback, "fallback")
                .into_iter()
                .enumerate()
                .map(|(k, mut name)| {
                    name.at = located(&format!("{ptr}/fallback/{k}"));
                    name
                })
                .collect();
            for (what, name) in
                std::iter::once(("route", &route)).chain(fallback.iter().map(|f| ("fallback", f)))
            {
                match targets.resolve(name) {
                    Err(e) => errors.push(e),
                    Ok(Route::Public) if rule.sensitive => errors.push(LoadError::at_location(
                        &name.at,
                        format!(
                            "rule `{}` is sensitive: {what} `{}` is a public provider; a \
                                 sensitive rule may list only `trust: local` providers",
                            rule.id, name.value
                        ),
                    )),
                    Ok(_) => {}
                }
            }

            rules.push(RuleSpec {
                id: rule.id.clone(),
                description: rule.description.clone(),
                route,
                fallback,
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
                client,
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
        providers,
        default_fallback,
    })
}

/// What `route` and `fallback` may name: `local`, `public` (or the public
/// provider's own id) and the policy's providers.
struct Targets<'a> {
    public_id: &'a str,
    providers: &'a [ProviderDecl],
}

impl Targets<'_> {
    /// The trust of the provider `name` names, or the error at it.
    fn resolve(&self, name: &Located<String>) -> Result<Route, LoadError> {
        let value = name.value.as_str();
        if value == ProviderId::LOCAL {
            return Ok(Route::Local);
        }
        if value == "public" || value == self.public_id {
            return Ok(Route::Public);
        }
        if let Some(p) = self.providers.iter().find(|p| p.entry.id == value) {
            return Ok(p.entry.trust);
        }
        let mut known: Vec<String> = vec![ProviderId::LOCAL.to_owned(), "public".to_owned()];
        known.extend(self.providers.iter().map(|p| p.entry.id.clone()));
        let suggestion = known
            .iter()
            .map(|k| (strsim::jaro_winkler(value, k), k))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| format!(": did you mean `{k}`?"));
        Err(LoadError::at_location(
            &name.at,
            match suggestion {
                Some(s) => format!("unknown provider `{value}`{s}"),
                None => format!(
                    "unknown provider `{value}`: expected `local`, `public` or an id of `providers` ({})",
                    known[2..]
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        ))
    }
}

/// The providers of every file, checked: ids unique and not reserved, URLs
/// usable (normalized), globs valid, a proxy only for a public provider.
fn providers(docs: &[ParsedFile<'_>], errors: &mut Vec<LoadError>) -> Vec<ProviderDecl> {
    let mut first: HashMap<String, Location> = HashMap::new();
    let mut out = Vec::new();
    for doc in docs {
        let at = |pointer: &str| Location {
            path: doc.file.path.clone(),
            position: doc.positions.value(pointer),
        };
        for (k, entry) in &doc.providers {
            let ptr = format!("/providers/{k}");
            let id_at = at(&format!("{ptr}/id"));
            let mut ok = true;
            let mut fail = |at: &Location, message: String| {
                errors.push(LoadError::at_location(at, message));
                ok = false;
            };
            if ProviderId::RESERVED.contains(&entry.id.as_str()) {
                fail(
                    &id_at,
                    format!(
                        "provider id `{}` is reserved: `local`, `public`, `openai` and `anthropic` \
                         name the built-in providers",
                        entry.id
                    ),
                );
            } else if let Some(earlier) = first.get(&entry.id) {
                fail(
                    &id_at,
                    format!(
                        "duplicate provider id `{}`: first defined at {earlier}",
                        entry.id
                    ),
                );
            } else {
                first.insert(entry.id.clone(), id_at.clone());
            }
            let url = match provider_url(&entry.url, entry.api) {
                Ok(url) => url,
                Err(why) => {
                    fail(&at(&format!("{ptr}/url")), why);
                    String::new()
                }
            };
            if let Some(proxy) = &entry.proxy {
                if entry.trust == Route::Local {
                    fail(
                        &at(&format!("{ptr}/proxy")),
                        format!(
                            "provider `{}` is `trust: local`: a local provider is never reached \
                             through a proxy",
                            entry.id
                        ),
                    );
                } else if let Err(why) = provider_url(proxy, entry.api) {
                    fail(
                        &at(&format!("{ptr}/proxy")),
                        why.replace("URL", "proxy URL"),
                    );
                }
            }
            let models_at: Vec<Location> = entry
                .models
                .iter()
                .flatten()
                .enumerate()
                .map(|(g, _)| at(&format!("{ptr}/models/{g}")))
                .collect();
            for (glob, glob_at) in entry.models.iter().flatten().zip(&models_at) {
                if let Err(why) = crate::providers::spec::model_glob(glob) {
                    fail(glob_at, format!("invalid glob {glob:?}: {why}"));
                }
            }
            if ok {
                let mut entry = entry.clone();
                if url != entry.url.trim_end_matches('/') {
                    tracing::info!(
                        provider = entry.id.as_str(),
                        url = %crate::providers::spec::shown_url(&url),
                        "the provider's URL ends with its API's path prefix; it was removed \
                         (the gateway adds the whole path)"
                    );
                }
                entry.url = url;
                out.push(ProviderDecl {
                    entry,
                    at: at(&ptr),
                    models_at,
                });
            }
        }
    }
    out
}

/// A provider's base URL: `http(s)://host…`, no query or fragment, without
/// a trailing `/` or API suffix. Errors never quote user info.
fn provider_url(raw: &str, api: Api) -> Result<String, String> {
    let shown = crate::providers::spec::shown_url(raw);
    let parsed = url::Url::parse(raw).map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "invalid URL {shown:?}: expected an http:// or https:// URL with a host"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "invalid URL {shown:?}: a base URL takes no query or fragment"
        ));
    }
    let trimmed = raw.trim_end_matches('/');
    Ok(
        crate::providers::spec::strip_api_suffix(trimmed, api)
            .unwrap_or_else(|| trimmed.to_owned()),
    )
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
