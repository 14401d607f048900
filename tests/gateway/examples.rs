//! The example policies of the policy guide (`examples/<scenario>/`): each is a
//! valid policy whose own test cases pass, checked through the binary exactly
//! as the guide tells an operator to, and every file points its editor at the
//! committed schemas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("read examples/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(
        folders.len() >= 5,
        "the guide has five scenarios: {folders:?}"
    );
    folders
}

/// Runs the binary from an empty folder with a clean environment, so neither a
/// `.env` nor an overlay variable of this process changes the outcome.
fn policy_mesh(args: &[&str], folder: &Path) -> Output {
    let cwd = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_policy-mesh"))
        .args(args)
        .arg(folder)
        .current_dir(cwd.path())
        .env_clear()
        .output()
        .expect("run policy-mesh")
}

fn yaml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("read folder")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_passes_check() {
    for folder in examples() {
        let out = policy_mesh(&["check"], &folder);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("ok: "),
            "check {}: {}\n{stdout}{}",
            folder.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_example_passes_its_own_cases() {
    for folder in examples() {
        assert!(
            !yaml_files(&folder.join("tests")).is_empty(),
            "{} has no test cases",
            folder.display()
        );
        let out = policy_mesh(&["test"], &folder);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout.lines().last().unwrap_or_default();
        let passed: usize = summary
            .strip_suffix(" passed, 0 failed")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            out.status.success() && passed > 0,
            "test {}: {}\n{stdout}{}",
            folder.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_example_file_points_at_the_committed_schema() {
    for folder in examples() {
        let files = yaml_files(&folder)
            .into_iter()
            .map(|f| (f, "policy.schema.json"))
            .chain(
                yaml_files(&folder.join("tests"))
                    .into_iter()
                    .map(|f| (f, "policy-tests.schema.json")),
            );
        for (file, schema) in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let first = text.lines().next().unwrap_or_default();
            let target = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{}: no modeline", file.display()));
            assert!(target.ends_with(schema), "{}: {first}", file.display());
            let resolved = file.parent().expect("a folder").join(target);
            assert!(
                resolved.is_file(),
                "{}: {target} does not resolve",
                file.display()
            );
        }
    }
}
