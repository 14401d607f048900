//! The effective defaults: built-in < policy file < environment, each value with
//! where it came from.

use std::fmt;

use super::{Defaults, LoadError};
use crate::env::Env;
use crate::names::Route;

/// Built-in characters per token.
pub const BUILTIN_CHARS_PER_TOKEN: f64 = 4.0;

/// Where an effective default came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Nobody set it.
    Builtin,
    /// A policy file (its path as read).
    File(String),
    /// An environment variable (its name).
    Env(&'static str),
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Builtin => f.write_str("builtin"),
            Provenance::File(path) => write!(f, "file:{path}"),
            Provenance::Env(name) => write!(f, "env:{name}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    /// The effective value.
    pub value: T,
    /// Where it came from.
    pub source: Provenance,
}

impl<T> Sourced<T> {
    fn builtin(value: T) -> Self {
        Sourced {
            value,
            source: Provenance::Builtin,
        }
    }

    fn set(&mut self, value: T, source: Provenance) {
        self.value = value;
        self.source = source;
    }
}

/// The defaults in force.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveDefaults {
    /// Route when no rule holds.
    pub provider: Sourced<Route>,
    /// USD per 1M input tokens of the public provider; `None`: no price.
    pub input_usd_per_1m_tokens: Sourced<Option<f64>>,
    /// Characters per token.
    pub chars_per_token: Sourced<f64>,
}

impl Default for EffectiveDefaults {
    fn default() -> Self {
        EffectiveDefaults {
            provider: Sourced::builtin(Route::Local),
            input_usd_per_1m_tokens: Sourced::builtin(None),
            chars_per_token: Sourced::builtin(BUILTIN_CHARS_PER_TOKEN),
        }
    }
}

impl EffectiveDefaults {
    /// Overlays the file's `defaults` (from `path`) and then the environment.
    /// Every invalid variable is reported, each naming the variable.
    pub fn resolve(file: Option<(&str, &Defaults)>, env: &Env) -> Result<Self, Vec<LoadError>> {
        let mut d = EffectiveDefaults::default();
        if let Some((path, defaults)) = file {
            let from = || Provenance::File(path.to_owned());
            if let Some(route) = defaults.provider {
                d.provider.set(route, from());
            }
            if let Some(pricing) = &defaults.pricing {
                if let Some(price) = pricing.input_usd_per_1m_tokens {
                    d.input_usd_per_1m_tokens.set(Some(price), from());
                }
                if let Some(cpt) = pricing.chars_per_token {
                    d.chars_per_token.set(cpt, from());
                }
            }
        }
        let mut errors = Vec::new();
        const PROVIDER: &str = "POLICY_DEFAULT_PROVIDER";
        const PRICE: &str = "POLICY_INPUT_USD_PER_1M_TOKENS";
        const CPT: &str = "POLICY_CHARS_PER_TOKEN";
        if let Some(v) = env.get(PROVIDER) {
            match v {
                "local" => d.provider.set(Route::Local, Provenance::Env(PROVIDER)),
                "public" => d.provider.set(Route::Public, Provenance::Env(PROVIDER)),
                _ => errors.push(LoadError::whole(
                    PROVIDER,
                    format!("invalid value {v:?}: expected `local` or `public`"),
                )),
            }
        }
        if let Some(v) = env.get(PRICE) {
            match parse_decimal(v) {
                Some(x) if x >= 0.0 => d
                    .input_usd_per_1m_tokens
                    .set(Some(x), Provenance::Env(PRICE)),
                _ => errors.push(LoadError::whole(
                    PRICE,
                    format!("invalid value {v:?}: expected a decimal number >= 0"),
                )),
            }
        }
        if let Some(v) = env.get(CPT) {
            match parse_decimal(v) {
                Some(x) if x > 0.0 => d.chars_per_token.set(x, Provenance::Env(CPT)),
                _ => errors.push(LoadError::whole(
                    CPT,
                    format!("invalid value {v:?}: expected a decimal number > 0"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }
}

/// A plain decimal number (`4`, `3.5`, `0.15`): no sign other than `-`, no
/// exponent, no `inf`/`nan`, which `f64::from_str` would accept.
fn parse_decimal(v: &str) -> Option<f64> {
    let t = v.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    let well_formed = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    if !well_formed {
        return None;
    }
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Pricing;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn builtin_then_file_then_env() {
        let defaults = Defaults {
            fallback: None,
            provider: Some(Route::Public),
            pricing: Some(Pricing {
                input_usd_per_1m_tokens: Some(0.15),
                chars_per_token: None,
            }),
        };
        let d = EffectiveDefaults::resolve(
            Some(("p/00.yaml", &defaults)),
            &env(&[("POLICY_CHARS_PER_TOKEN", "3.5")]),
        )
        .expect("valid");
        assert_eq!(d.provider.value, Route::Public);
        assert_eq!(d.provider.source.to_string(), "file:p/00.yaml");
        assert_eq!(d.input_usd_per_1m_tokens.value, Some(0.15));
        assert_eq!(d.chars_per_token.value, 3.5);
        assert_eq!(
            d.chars_per_token.source.to_string(),
            "env:POLICY_CHARS_PER_TOKEN"
        );

        let d = EffectiveDefaults::resolve(
            Some(("p/00.yaml", &defaults)),
            &env(&[
                ("POLICY_DEFAULT_PROVIDER", "local"),
                ("POLICY_INPUT_USD_PER_1M_TOKENS", ""),
            ]),
        )
        .expect("valid");
        assert_eq!(d.provider.value, Route::Local);
        assert_eq!(
            d.provider.source,
            Provenance::Env("POLICY_DEFAULT_PROVIDER")
        );
        assert_eq!(
            d.input_usd_per_1m_tokens.source.to_string(),
            "file:p/00.yaml"
        );

        let d = EffectiveDefaults::resolve(None, &env(&[])).expect("valid");
        assert_eq!(d, EffectiveDefaults::default());
        assert_eq!(d.chars_per_token.source.to_string(), "builtin");
    }

    #[test]
    fn every_invalid_variable_is_named() {
        let errors = EffectiveDefaults::resolve(
            None,
            &env(&[
                ("POLICY_DEFAULT_PROVIDER", "remote"),
                ("POLICY_INPUT_USD_PER_1M_TOKENS", "-1"),
                ("POLICY_CHARS_PER_TOKEN", "0"),
            ]),
        )
        .unwrap_err();
        let origins: Vec<_> = errors.iter().map(|e| e.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "POLICY_DEFAULT_PROVIDER",
                "POLICY_INPUT_USD_PER_1M_TOKENS",
                "POLICY_CHARS_PER_TOKEN"
            ]
        );
        assert!(
            errors[0]
                .to_string()
                .starts_with("POLICY_DEFAULT_PROVIDER: invalid value \"remote\"")
        );
    }

    #[test]
    fn decimals() {
        for ok in ["4", "3.5", "0.15", " 2 ", "0"] {
            assert!(parse_decimal(ok).is_some(), "{ok}");
        }
        for bad in ["", "abc", "inf", "NaN", "1e3", "1.2.3", ".", "+-1"] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
    }
}
