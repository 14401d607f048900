//! Where policy files come from: a `conf.d`-style folder or one file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LoadError, LoadErrors};
use crate::env::Env;

/// Default policy folder.
pub const DEFAULT_POLICY_DIR: &str = "policies/";

/// The policy to load: every policy file of a folder, or one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `POLICY_DIR`: `*.yaml` and `*.yml` directly in the folder, in byte order of name.
    Dir(PathBuf),
    /// `POLICY_FILE`: this one file is the whole policy.
    File(PathBuf),
}

impl PolicySource {
    /// `POLICY_FILE` when set, else `POLICY_DIR`, else `policies/`.
    pub fn from_env(env: &Env) -> Self {
        match (env.get("POLICY_FILE"), env.get("POLICY_DIR")) {
            (Some(file), _) => PolicySource::File(file.into()),
            (None, Some(dir)) => PolicySource::Dir(dir.into()),
            (None, None) => PolicySource::Dir(DEFAULT_POLICY_DIR.into()),
        }
    }

    /// A path given on the command line: a folder or a single file.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if path.is_file() {
            PolicySource::File(path)
        } else {
            PolicySource::Dir(path)
        }
    }

    /// The folder or file as given.
    pub fn path(&self) -> &Path {
        match self {
            PolicySource::Dir(p) | PolicySource::File(p) => p,
        }
    }

    /// The folder to watch for changes: the policy folder, or the folder holding
    /// the policy file.
    pub fn watch_dir(&self) -> PathBuf {
        match self {
            PolicySource::Dir(p) => p.clone(),
            PolicySource::File(p) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    /// The folder that holds policy test cases (`tests/` inside the policy folder, or
    /// beside the policy file).
    pub fn tests_dir(&self) -> PathBuf {
        self.watch_dir().join("tests")
    }
}

/// One policy file as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file as read: the folder joined with the name, or `POLICY_FILE` as given.
    pub path: Arc<str>,
    /// The file name without its folder (part of the version hash).
    pub name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// Whether a folder entry is a policy file by its name: `*.yaml` or `*.yml`, not hidden.
/// Editor leftovers (`*~`, `*.swp`, `*.tmp`, `4913`) never end in `.yaml` or `.yml`.
pub fn is_policy_file_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && (bytes.ends_with(b".yaml") || bytes.ends_with(b".yml"))
}

/// Reads every policy file of `source`, in load order.
pub fn read_sources(source: &PolicySource) -> Result<Vec<SourceFile>, LoadErrors> {
    match source {
        PolicySource::File(path) => {
            let shown = path.display().to_string();
            let bytes = std::fs::read(path)
                .map_err(|e| LoadError::whole(&shown, format!("cannot read policy file: {e}")))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| shown.clone());
            Ok(vec![SourceFile {
                path: shown.into(),
                name,
                bytes,
            }])
        }
        PolicySource::Dir(dir) => read_dir(dir),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, LoadErrors> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LoadError::whole(&shown, format!("cannot read policy folder: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| LoadError::whole(&shown, format!("cannot read policy folder: {e}")))?;
        let name = entry.file_name();
        // `metadata` follows symlinks: a link to a file counts, a link to a folder does not.
        if is_policy_file_name(&name) && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
        {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    if names.is_empty() {
        return Err(
            LoadError::whole(&shown, "no policy files (*.yaml, *.yml) in this folder").into(),
        );
    }
    let mut files = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let path_shown = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => files.push(SourceFile {
                path: path_shown.into(),
                name: name.to_string_lossy().into_owned(),
                bytes,
            }),
            Err(e) => errors.push(LoadError::whole(
                path_shown,
                format!("cannot read policy file: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_names() {
        for yes in ["00-defaults.yaml", "a.yml", "Team.yaml"] {
            assert!(is_policy_file_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            ".hidden.yaml",
            "a.yaml~",
            ".a.yaml.swp",
            "a.yaml.tmp",
            "4913",
            "readme.md",
            "..data",
        ] {
            assert!(!is_policy_file_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn reads_in_byte_order_and_skips_what_is_not_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "extra.yaml",
            "Team.yaml",
            "10-sensitive.yml",
            "00-defaults.yaml",
            ".hidden.yaml",
            "x.yaml~",
        ] {
            std::fs::write(dir.path().join(name), "version: 1\n").expect("write");
        }
        std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
        std::fs::create_dir(dir.path().join("folder.yaml")).expect("mkdir");
        let files = read_sources(&PolicySource::Dir(dir.path().to_path_buf())).expect("read");
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "00-defaults.yaml",
                "10-sensitive.yml",
                "Team.yaml",
                "extra.yaml"
            ]
        );
        assert!(files[0].path.ends_with("00-defaults.yaml"));
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_sources(&PolicySource::Dir(dir.path().to_path_buf())).unwrap_err();
        assert!(err.to_string().contains("no policy files"), "{err}");
    }
}
