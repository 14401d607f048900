//! Who is calling: the clients file (`CLIENTS_FILE`), its keys and scopes.
//!
//! The file holds, per client, an id, the SHA-256 of its key (never the key)
//! and its scopes. Keys are 256 random bits from the OS ([`new_key`]), so a
//! plain SHA-256 is the right digest (no password KDF is needed against a
//! guess of 2^256). [`ClientTable::authenticate`] hashes the key it is given
//! and compares the digest with every client's in constant time
//! (`subtle::ConstantTimeEq`, and always the whole table), so neither which
//! client matched nor how much of a digest matched shows in the time taken.
//!
//! The file is read like a policy file: YAML checked against the schema
//! generated from [`ClientsFile`], every error at `path:line:column`.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::names::ClientScope;
use crate::policy::yaml::{DocumentSchema, parse_document, validator_for};
use crate::policy::{ID_PATTERN, LoadError, LoadErrors, Location};

/// The id of the caller of an open gateway (no `CLIENTS_FILE`).
pub const ANONYMOUS: &str = "anonymous";

/// [`ANONYMOUS`], shared: what a decision on an open gateway carries.
pub fn anonymous() -> Arc<str> {
    static ID: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(ANONYMOUS));
    Arc::clone(&ID)
}

/// The most clients named in metric labels; the rest are `other`.
pub const MAX_CLIENT_LABELS: usize = 100;

/// The prefix of every key `keys new` makes.
pub const KEY_PREFIX: &str = "pm_";

/// The clients file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Policy Mesh clients file")]
pub struct ClientsFile {
    /// The clients that may call the gateway. Empty: nobody may.
    pub clients: Vec<ClientEntry>,
}

/// One client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// Unique: lowercase letters, digits, `_` and `-`, at most 64.
    #[schemars(regex(pattern = ID_PATTERN))]
    pub id: String,
    /// The SHA-256 of the client's key, 64 hex digits (either case); the key
    /// itself is never stored. `policy-mesh keys new` prints both.
    #[schemars(regex(pattern = "^[0-9a-fA-F]{64}$"))]
    pub key_sha256: String,
    /// What the key may do: `chat` (default), `admin` (everything) or
    /// `metrics` (`GET /v1/metrics` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<ClientScope>", length(min = 1))]
    pub scopes: Option<Vec<ClientScope>>,
    /// Requests per minute this client may make, per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RateLimit")]
    pub rate_limit: Option<RateLimit>,
}

/// A client's token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The refill rate.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub requests_per_minute: f64,
    /// The bucket's size. Default: one second's worth, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1))]
    pub burst: Option<u32>,
}

/// One client, as a request is checked against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Its id.
    pub id: Arc<str>,
    digest: [u8; 32],
    scopes: Vec<ClientScope>,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimit>,
}

impl Client {
    /// Whether the client may use `scope`: `admin` may use every scope.
    pub fn may(&self, scope: ClientScope) -> bool {
        self.scopes.contains(&ClientScope::Admin) || self.scopes.contains(&scope)
    }

    /// Its scopes, as written (`chat` when none were).
    pub fn scopes(&self) -> &[ClientScope] {
        &self.scopes
    }
}

/// The clients of a loaded file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientTable {
    clients: Vec<Client>,
}

impl ClientTable {
    /// The client whose key is `key`, if any. Hashes `key`, then compares
    /// the digest with every client's in constant time, the whole table
    /// whatever matches, so the time taken says nothing of the digests.
    pub fn authenticate(&self, key: &str) -> Option<&Client> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for client in &self.clients {
            if bool::from(client.digest.ct_eq(&digest)) {
                found = Some(client);
            }
        }
        found
    }

    /// The number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the file lists no client (authentication on, nobody admitted).
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The metric label of client `id`: its id for `anonymous` and the first
    /// [`MAX_CLIENT_LABELS`] clients of the file, `other` for the rest, so
    /// that a large file cannot blow up the number of series.
    pub fn label<'a>(&self, id: &'a str) -> &'a str {
        match self.clients.iter().position(|c| &*c.id == id) {
            Some(i) if i < MAX_CLIENT_LABELS => id,
            Some(_) => "other",
            None => id,
        }
    }

    /// The client with id `id`.
    pub fn get(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| &*c.id == id)
    }
}

static CLIENTS_SCHEMA: LazyLock<DocumentSchema> = LazyLock::new(validator_for::<ClientsFile>);

/// Reads the clients file at `path`: every error at its `path:line:column`.
pub fn load(path: &Path) -> Result<ClientTable, LoadErrors> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| LoadError::whole(&shown, format!("cannot read the clients file: {e}")))?;
    parse(&shown, &bytes)
}

/// Parses and checks the text of a clients file read from `path`.
pub fn parse(path: &str, bytes: &[u8]) -> Result<ClientTable, LoadErrors> {
    let text = crate::policy::utf8_text(path, bytes).map_err(LoadErrors::from)?;
    let document =
        parse_document::<ClientsFile>(path, text, &CLIENTS_SCHEMA).map_err(LoadErrors)?;
    let at = |pointer: &str| Location {
        path: Arc::from(path),
        position: document.positions.value(pointer),
    };
    let mut errors = Vec::new();
    let mut clients: Vec<Client> = Vec::new();
    for (i, entry) in document.value.clients.iter().enumerate() {
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(entry.key_sha256.to_ascii_lowercase(), &mut digest).is_err() {
            // The schema has checked it; reported all the same.
            errors.push(LoadError::at_location(
                &at(&format!("/clients/{i}/key_sha256")),
                "`key_sha256` must be 64 hex digits",
            ));
            continue;
        }
        if let Some(first) = clients.iter().position(|c| *c.id == entry.id) {
            errors.push(LoadError::at_location(
                &at(&format!("/clients/{i}/id")),
                format!(
                    "duplicate client id `{}`: first defined at {}",
                    entry.id,
                    at(&format!("/clients/{first}/id"))
                ),
            ));
            continue;
        }
        if let Some(other) = clients.iter().find(|c| c.digest == digest) {
            // Never the digest itself in the message.
            errors.push(LoadError::at_location(
                &at(&format!("/clients/{i}/key_sha256")),
                format!(
                    "client `{}` has the same key as client `{}`: every client needs a key of its own",
                    entry.id, other.id
                ),
            ));
            continue;
        }
        clients.push(Client {
            id: Arc::from(entry.id.as_str()),
            digest,
            scopes: entry
                .scopes
                .clone()
                .unwrap_or_else(|| vec![ClientScope::Chat]),
            rate_limit: entry.rate_limit,
        });
    }
    if errors.is_empty() {
        Ok(ClientTable { clients })
    } else {
        Err(LoadErrors(errors))
    }
}

/// A new key: `pm_` and 43 base64url characters, 256 random bits from the OS.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The `key_sha256` of `key`: 64 lowercase hex digits.
pub fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The JSON Schema of the clients file, pretty-printed with a final newline
/// (what `schema/clients.schema.json` holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ClientsFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &str) -> String {
        format!("clients:\n{entries}")
    }

    #[test]
    fn a_key_is_found_by_its_digest_and_scopes_imply_as_they_should() {
        let chat = new_key().expect("a key");
        let admin = new_key().expect("a key");
        assert!(
            chat.starts_with(KEY_PREFIX) && chat.len() == 3 + 43,
            "{chat}"
        );
        assert_ne!(chat, admin);
        let text = file(&format!(
            "  - {{ id: team, key_sha256: {} }}\n  - {{ id: ops, key_sha256: {}, scopes: [admin] }}\n",
            key_sha256(&chat),
            key_sha256(&admin).to_uppercase()
        ));
        let table = parse("clients.yaml", text.as_bytes()).expect("valid");
        assert_eq!(table.len(), 2);
        let team = table.authenticate(&chat).expect("known");
        assert_eq!(&*team.id, "team");
        assert!(team.may(ClientScope::Chat));
        assert!(!team.may(ClientScope::Admin));
        assert!(!team.may(ClientScope::Metrics));
        let ops = table
            .authenticate(&admin)
            .expect("known, digest in upper case");
        assert!(ops.may(ClientScope::Chat) && ops.may(ClientScope::Metrics));
        assert!(table.authenticate("pm_nope").is_none());
        assert!(table.authenticate("").is_none());
        assert!(table.authenticate(&chat[..chat.len() - 1]).is_none());
    }

    #[test]
    fn errors_are_placed_and_never_quote_a_digest() {
        let digest = key_sha256("pm_same");
        let text = file(&format!(
            "  - {{ id: a, key_sha256: {digest} }}\n  - {{ id: a, key_sha256: {} }}\n  - {{ id: b, key_sha256: {digest} }}\n  - {{ id: c, key_sha256: xyz }}\n  - {{ id: d, key_sha256: {}, scopes: [] }}\n",
            key_sha256("pm_other"),
            key_sha256("pm_third"),
        ));
        let errors = parse("c.yaml", text.as_bytes()).expect_err("invalid");
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("c.yaml:5:26:")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("c.yaml:6:") && l.contains("scopes")),
            "{lines:#?}"
        );
        let text = file(&format!(
            "  - {{ id: a, key_sha256: {digest} }}\n  - {{ id: a, key_sha256: {} }}\n  - {{ id: b, key_sha256: {digest} }}\n",
            key_sha256("pm_other"),
        ));
        let errors = parse("c.yaml", text.as_bytes()).expect_err("invalid");
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("c.yaml:3:11: duplicate client id `a`: first defined at c.yaml:2"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("c.yaml:4:26: client `b` has the same key as client `a`"),
            "{lines:#?}"
        );
        for line in &lines {
            assert!(!line.contains(&digest), "{line}");
        }
        // An empty list is valid: authentication on, nobody admitted.
        let table = parse("c.yaml", b"clients: []\n").expect("valid");
        assert!(table.is_empty());
        assert!(table.authenticate("pm_any").is_none());
    }
}
