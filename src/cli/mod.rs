//! The `policy-mesh` command line: the gateway (`serve`, the default) and the
//! tools an operator uses on a policy before serving it (`check`, `test`,
//! `decide`, `schema`).
//!
//! Every command reads its configuration as `serve` does ([`Env::from_process`]:
//! the environment over `.env`) and loads the policy through
//! [`crate::load_compiled`] with the public provider `serve` resolves, so a
//! policy `check` accepts is one the gateway serves.
//! Exit status: 0 success; 1 an invalid policy, variable, case file or request,
//! or a failing case; 2 a command-line usage error.

pub mod cases;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::chat::ChatMessage;
use crate::compiler::CompiledPolicy;
use crate::env::Env;
use crate::policy::{LoadErrors, PolicySource, schema};
use crate::providers::{Builtins, ProviderConfig};
use crate::server::request::ChatRequest;

/// Exit status of a command-line usage error, as clap exits on one.
const USAGE: u8 = 2;

/// A local-first AI gateway that routes chat requests by a YAML policy.
#[derive(Debug, Parser)]
#[command(name = "policy-mesh", version, about, long_about = None)]
pub struct Cli {
    /// What to do; the gateway when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Load and compile the policy; print a summary, or every error.
    Check {
        /// Policy folder or single policy file [default: POLICY_FILE, else POLICY_DIR, else policies/].
        path: Option<PathBuf>,
    },
    /// Run the policy test cases in the policy's tests/ folder.
    Test {
        /// Policy folder or single policy file [default: POLICY_FILE, else POLICY_DIR, else policies/].
        path: Option<PathBuf>,
    },
    /// Print the JSON Schema of policy files.
    Schema {
        /// Print the schema of policy test case files instead.
        #[arg(long, conflicts_with = "clients")]
        tests: bool,
        /// Print the schema of the clients file instead.
        #[arg(long)]
        clients: bool,
    },
    /// Make and hash client keys for the clients file.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Decide a chat request read as JSON from stdin, and print the decision with its trace.
    Decide {
        /// Policy folder or single policy file [default: POLICY_FILE, else POLICY_DIR, else policies/].
        #[arg(long, value_name = "PATH")]
        policies: Option<PathBuf>,
        /// Decide one user message with this text instead of reading stdin.
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// The model the request asks for, which `model` conditions look at; it
        /// replaces the `model` of a request read from stdin.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// The calling client's id, which `client` conditions look at
        /// [default: the request's `client`, else anonymous].
        #[arg(long, value_name = "ID")]
        client: Option<String>,
    },
}

/// The subcommands of `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum KeysCommand {
    /// Print a new key on stdout, once, and on stderr the clients file entry
    /// that admits it (its SHA-256, never the key).
    New {
        /// The client's id.
        #[arg(long)]
        id: String,
        /// A scope besides `chat`: `admin` or `metrics`.
        #[arg(long, value_name = "SCOPE")]
        scope: Option<crate::names::ClientScope>,
    },
    /// Read a key on stdin and print its `key_sha256`.
    Hash,
}

/// Runs the command line of this process and returns its exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` end up here too, with status 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(USAGE));
        }
    };
    run(cli.command.unwrap_or(Command::Serve), Env::from_process())
}

/// Runs one command with the configuration `env`.
pub fn run(command: Command, env: Env) -> ExitCode {
    let source = |path: Option<PathBuf>| match path {
        Some(path) => PolicySource::from_path(path),
        None => PolicySource::from_env(&env),
    };
    match command {
        Command::Serve => crate::server::run(env),
        Command::Check { path } => check(&source(path), &env),
        Command::Test { path } => test(&source(path), &env),
        Command::Schema { tests, clients } => print_stdout(&if tests {
            cases::cases_schema_json()
        } else if clients {
            crate::clients::schema_json()
        } else {
            schema::policy_schema_json()
        }),
        Command::Keys { command } => keys(command),
        Command::Decide {
            policies,
            message,
            model,
            client,
        } => decide(&source(policies), &env, message, model, client),
    }
}

/// The policy at `source` as `serve` loads it, with the public provider
/// `env` names. An invalid provider is reported after the policy's own
/// errors, which are still looked for.
fn load(source: &PolicySource, env: &Env) -> Result<CompiledPolicy, LoadErrors> {
    match ProviderConfig::from_env(env) {
        Ok(config) => crate::load_compiled(source, env, &config.builtins()),
        Err(bad) => {
            let mut errors = crate::load_compiled(source, env, &Builtins::defaults())
                .err()
                .map(|errors| errors.0)
                .unwrap_or_default();
            errors.extend(bad.into_iter().map(Into::into));
            Err(LoadErrors(errors))
        }
    }
}

/// `keys new` and `keys hash`.
fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::New { id, scope } => {
            if !regex::Regex::new(crate::policy::ID_PATTERN).is_ok_and(|re| re.is_match(&id)) {
                eprintln!("invalid --id {id:?}: 1 to 64 lowercase letters, digits, `_` or `-`");
                return ExitCode::from(USAGE);
            }
            let key = match crate::clients::new_key() {
                Ok(key) => key,
                Err(e) => {
                    eprintln!("cannot draw random bytes from the OS: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let scopes = match scope {
                None | Some(crate::names::ClientScope::Chat) => String::new(),
                Some(scope) => format!(", scopes: [{scope}]"),
            };
            eprintln!(
                "Add this entry under `clients:` in the clients file (the key above is shown once and stored nowhere):\n  - {{ id: {id}, key_sha256: {}{scopes} }}",
                crate::clients::key_sha256(&key)
            );
            print_stdout(&format!("{key}\n"))
        }
        KeysCommand::Hash => {
            let mut key = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut key) {
                eprintln!("cannot read the key from stdin: {e}");
                return ExitCode::FAILURE;
            }
            let key = key.trim_end_matches(['\r', '\n']);
            if key.is_empty() {
                eprintln!("no key on stdin");
                return ExitCode::from(USAGE);
            }
            print_stdout(&format!("{}\n", crate::clients::key_sha256(key)))
        }
    }
}

/// The clients file `CLIENTS_FILE` names, checked; `Ok(None)` when unset.
fn clients_file(env: &Env) -> Result<Option<crate::clients::ClientTable>, LoadErrors> {
    match env.get("CLIENTS_FILE") {
        None => Ok(None),
        Some(path) => crate::clients::load(std::path::Path::new(path)).map(Some),
    }
}

/// `check`: the summary line on stdout, or every error line on stderr: the
/// policy's, the clients file's, then every other variable `serve` reads
/// that is invalid.
fn check(source: &PolicySource, env: &Env) -> ExitCode {
    let policy = match (load(source, env), clients_file(env)) {
        (policy, Ok(_)) => policy,
        (Ok(_), Err(clients)) => Err(clients),
        (Err(mut errors), Err(clients)) => {
            errors.0.extend(clients.0);
            Err(errors)
        }
    };
    let settings = crate::server::Settings::from_env(env);
    if let Err(errors) = &settings {
        let mut lines = policy.as_ref().err().cloned().unwrap_or_default().0;
        // The public provider's variables are the policy's too: once is enough.
        lines.extend(
            errors
                .iter()
                .filter(|e| !lines.iter().any(|l| l.origin == e.variable))
                .cloned()
                .map(Into::into)
                .collect::<Vec<_>>(),
        );
        return report(&LoadErrors(lines));
    }
    match policy {
        Ok(compiled) => {
            let policy = compiled.policy();
            let mut rules = counted(policy.rules.len(), "rule");
            let sensitive = policy.rules.iter().filter(|r| r.sensitive).count();
            if sensitive > 0 {
                rules.push_str(&format!(" ({sensitive} sensitive)"));
            }
            print_stdout(&format!(
                "ok: {}, {rules}, {}, version {}\n",
                counted(policy.sources.len(), "file"),
                counted(policy.keyword_count(), "keyword"),
                compiled.version()
            ))
        }
        Err(errors) => report(&errors),
    }
}

/// `test`: one line per case and a summary on stdout; errors in case files on stderr.
fn test(source: &PolicySource, env: &Env) -> ExitCode {
    let compiled = match load(source, env) {
        Ok(compiled) => compiled,
        Err(errors) => return report(&errors),
    };
    let loaded = cases::read_cases(&source.tests_dir());
    for error in &loaded.errors {
        eprintln!("{error}");
    }
    let mut summary = cases::Summary::default();
    let mut lines = String::new();
    for case in &loaded.cases {
        let result = case.run(&compiled);
        summary.add(&result);
        lines.push_str(&format!("{result}\n"));
    }
    lines.push_str(&format!("{summary}\n"));
    let printed = print_stdout(&lines);
    if summary.failed > 0 || !loaded.errors.is_empty() {
        ExitCode::FAILURE
    } else {
        printed
    }
}

/// `decide`: the `/v1/decide` body for a request from stdin or `--message`, with
/// the model of `--model` if given, else of the request.
fn decide(
    source: &PolicySource,
    env: &Env,
    message: Option<String>,
    model: Option<String>,
    client: Option<String>,
) -> ExitCode {
    let mut request = match message {
        Some(text) => ChatRequest {
            messages: vec![ChatMessage::user(text)],
            model: None,
            client: None,
        },
        None => match read_request() {
            Ok(request) => request,
            Err(e) => {
                eprintln!("invalid request: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if model.is_some() {
        request.model = model;
    }
    let client: std::sync::Arc<str> = match client.or(request.client) {
        Some(id) => std::sync::Arc::from(id),
        None => crate::clients::anonymous(),
    };
    let compiled = match load(source, env) {
        Ok(compiled) => compiled,
        Err(errors) => return report(&errors),
    };
    match serde_json::to_string_pretty(&compiled.explain_for(
        &request.messages,
        request.model.as_deref(),
        &client,
    )) {
        Ok(json) => print_stdout(&format!("{json}\n")),
        Err(e) => {
            eprintln!("cannot print the decision: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The request on stdin, read by the parser of `POST /v1/decide`, so a
/// mistake is worded as the API words it.
fn read_request() -> Result<ChatRequest, String> {
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    ChatRequest::from_slice(&text).map_err(|e| e.to_string())
}

/// `1 file`, `3 files`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Every error line on stderr; exit status 1.
fn report(errors: &LoadErrors) -> ExitCode {
    for error in &errors.0 {
        eprintln!("{error}");
    }
    ExitCode::FAILURE
}

/// Writes `text` to stdout. A closed pipe (`| head`) or a full disk is an error
/// worth a line on stderr, not a panic as with `print!`.
fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("policy-mesh").chain(args.iter().copied()))
    }

    fn origins(source: &PolicySource, pairs: &[(&str, &str)]) -> Vec<String> {
        let env = Env::from_pairs(pairs.iter().copied());
        let errors = load(source, &env).expect_err("invalid");
        errors.0.into_iter().map(|e| e.origin).collect()
    }

    #[test]
    fn policy_and_provider_errors_are_reported_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "version: 3\n").expect("write");
        let source = PolicySource::File(file.clone());
        let shown = file.display().to_string();
        assert_eq!(
            origins(&source, &[("PUBLIC_LLM_PROVIDER", "azure")]),
            [shown.as_str(), "PUBLIC_LLM_PROVIDER"]
        );

        std::fs::write(&file, "version: 1\n").expect("write");
        assert_eq!(
            origins(&source, &[("PUBLIC_LLM_URL", "ftp://example.com")]),
            ["PUBLIC_LLM_URL"]
        );
        let compiled = load(&source, &Env::default()).expect("valid");
        assert_eq!(compiled.public_provider().id, "openai");
        let env = Env::from_pairs([("PUBLIC_LLM_URL", "https://api.anthropic.com")]);
        let compiled = load(&source, &env).expect("valid");
        assert_eq!(compiled.public_provider().id, "anthropic");
    }

    #[test]
    fn the_command_line_as_specified() {
        assert_eq!(parse(&[]).expect("parses").command, None);
        assert_eq!(
            parse(&["check", "p"]).expect("parses").command,
            Some(Command::Check {
                path: Some("p".into())
            })
        );
        assert_eq!(
            parse(&["decide", "--policies", "p", "--message", "hi"])
                .expect("parses")
                .command,
            Some(Command::Decide {
                policies: Some("p".into()),
                message: Some("hi".into()),
                model: None,
                client: None,
            })
        );
        assert_eq!(
            parse(&["decide", "--model", "gpt-4o-mini"])
                .expect("parses")
                .command,
            Some(Command::Decide {
                policies: None,
                message: None,
                model: Some("gpt-4o-mini".into()),
                client: None,
            })
        );
        assert_eq!(
            parse(&["schema"]).expect("parses").command,
            Some(Command::Schema {
                tests: false,
                clients: false
            })
        );
        assert_eq!(
            parse(&["keys", "new", "--id", "ops", "--scope", "admin"])
                .expect("parses")
                .command,
            Some(Command::Keys {
                command: KeysCommand::New {
                    id: "ops".into(),
                    scope: Some(crate::names::ClientScope::Admin)
                }
            })
        );
        assert!(parse(&["keys", "new", "--id", "x", "--scope", "root"]).is_err());
        assert!(parse(&["schema", "--tests", "--clients"]).is_err());
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        for args in [&["chek"][..], &["check", "a", "b"], &["schema", "x"]] {
            assert_eq!(parse(args).expect_err("usage error").exit_code(), 2);
        }
        assert_eq!(parse(&["--help"]).expect_err("help").exit_code(), 0);
    }

    #[test]
    fn counts_are_singular_or_plural() {
        assert_eq!(counted(0, "rule"), "0 rules");
        assert_eq!(counted(1, "file"), "1 file");
        assert_eq!(counted(3, "keyword"), "3 keywords");
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
