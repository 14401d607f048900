//! Load errors: one line each, `path:line:column: message`, as an editor expects.

use std::fmt;

use super::SourceFile;
use crate::env::ConfigError;

/// A 1-based line and column (columns count Unicode characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A place in a policy file: the file as read, and a position in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file as read (`policies/10-sensitive.yaml`).
    pub path: std::sync::Arc<str>,
    /// Where in it.
    pub position: Position,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.position.line)
    }
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value as parsed.
    pub value: T,
    /// Where it was written.
    pub at: Location,
}

impl<T> Located<T> {
    /// `value` written nowhere: for policies built in code.
    pub fn unplaced(value: T) -> Self {
        Located {
            value,
            at: Location {
                path: std::sync::Arc::from(""),
                position: Position { line: 0, column: 0 },
            },
        }
    }
}

/// One thing wrong with a policy, a policy test file or an overlay variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file as read, or the name of the offending variable.
    pub origin: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl LoadError {
    /// An error at a position in a file.
    pub fn at(path: &str, position: Position, message: impl Into<String>) -> Self {
        LoadError {
            origin: path.to_owned(),
            position: Some(position),
            message: message.into(),
        }
    }

    /// An error at a located item.
    pub fn at_location(location: &Location, message: impl Into<String>) -> Self {
        Self::at(&location.path, location.position, message)
    }

    /// An error about a whole file or folder, or a variable.
    pub fn whole(origin: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            origin: origin.into(),
            position: None,
            message: message.into(),
        }
    }
}

/// An invalid variable among a policy's load errors: `VARIABLE: message`.
impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> Self {
        LoadError::whole(e.variable, e.message)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.origin, p.line, p.column, self.message
            ),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// Every error of one load, in the order they were found (files in load order,
/// then by position).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    /// `errors` in the order they are reported: by file in load order, then
    /// by position (a whole-file error first); errors about anything else,
    /// variables, last. The sort is stable, so errors at one place keep the
    /// order they were found in.
    pub fn in_load_order(mut errors: Vec<LoadError>, files: &[SourceFile]) -> Self {
        errors.sort_by_cached_key(|e| {
            let file = files.iter().position(|f| *f.path == *e.origin);
            (file.unwrap_or(usize::MAX), e.position)
        });
        LoadErrors(errors)
    }

    /// The error lines joined by `\n`, as reported in `reload.last_error`.
    pub fn lines(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<LoadError> for LoadErrors {
    fn from(e: LoadError) -> Self {
        LoadErrors(vec![e])
    }
}

impl From<Vec<LoadError>> for LoadErrors {
    fn from(v: Vec<LoadError>) -> Self {
        LoadErrors(v)
    }
}
