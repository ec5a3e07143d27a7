//! The configuration file: `ringftpd --config ringftpd.toml`.
//!
//! Every key is optional; what the file leaves out keeps the built-in default, and a flag
//! given on the command line wins over the file. Unknown keys are errors, so a typo never
//! silently leaves a setting at its default. `ringftpd.example.toml` documents every key.
//!
//! Errors name the file, the line and column, and the key as a path (`users[1].home`), on one
//! line, so they read well in a terminal and in the journal alike.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Component, Path, PathBuf};

use ringftp::ban::IpNet;
use ringftp::storage::HashAlgo;
use ringftp::{Engine, Permissions, UploadPolicy, User};
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The file's top level. Field names are the keys; each maps to one builder option or flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<SocketAddr>>,
    /// Relative to the file's directory, so a config works wherever the server is started.
    pub root: Option<PathBuf>,
    /// `"MIN-MAX"`, the same spelling as `--passive-ports`.
    #[serde(default, deserialize_with = "passive_ports")]
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// The `--public-address` spelling: a string (entries separated by commas) or a list.
    #[serde(default, deserialize_with = "public_addresses")]
    pub public_address: Option<Vec<crate::Public>>,
    /// Balancers that send a PROXY protocol header (`--proxy-protocol-from`).
    #[serde(default, deserialize_with = "networks")]
    pub proxy_protocol_from: Option<Vec<IpNet>>,
    pub proxy_protocol_data: Option<bool>,
    pub cores: Option<usize>,
    pub greeting: Option<String>,
    /// Seconds.
    pub idle_timeout: Option<u64>,
    /// Seconds.
    pub login_timeout: Option<u64>,
    /// Seconds.
    pub data_timeout: Option<u64>,
    /// Seconds.
    pub stall_timeout: Option<u64>,
    pub max_line_length: Option<usize>,
    pub max_login_failures: Option<u32>,
    pub ban_threshold: Option<u32>,
    /// Seconds.
    pub ban_time: Option<u64>,
    /// Networks (`10.0.0.0/8`) or addresses never banned.
    #[serde(default, deserialize_with = "networks")]
    pub ban_allow: Option<Vec<IpNet>>,
    pub user_lockout: Option<u32>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<u32>,
    /// Seconds.
    pub shutdown_grace: Option<u64>,
    pub pipe_size: Option<usize>,
    pub upload_pipe_size: Option<usize>,
    pub splice: Option<bool>,
    pub uploads: Option<Uploads>,
    pub hash_uploads: Option<HashUploads>,
    pub engine: Option<EngineName>,
    pub metrics: Option<SocketAddr>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// The transfer log; relative to the file's directory, like `root`.
    pub xferlog: Option<PathBuf>,
    pub anonymous: Option<bool>,
    /// Relative to the storage root; setting it turns anonymous access on unless
    /// `anonymous = false`.
    pub anonymous_home: Option<Spanned<PathBuf>>,
    /// Relative to the file's directory, like `root`.
    pub users_file: Option<PathBuf>,
    pub dangerous_allow_foreign_data_connections: Option<bool>,
    pub active_source_port: Option<bool>,
    // Object storage (see --storage); the keys here are the only place for static credentials.
    pub storage: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: Option<bool>,
    pub s3_list_page: Option<usize>,
    pub s3_checksums: Option<bool>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// FTPS: PEM files, relative to the file's directory like `root`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls: Option<TlsMode>,
    pub tls_data: Option<TlsMode>,
    pub tls_anonymous_exempt: Option<bool>,
    pub implicit_listen: Option<Vec<SocketAddr>>,
    pub tls_client_auth: Option<ClientAuthMode>,
    pub tls_client_ca: Option<PathBuf>,
    pub dangerous_no_tls_session_reuse: Option<bool>,
    pub ktls: Option<KtlsName>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
}

/// `tls = "off" | "optional" | "required"` (and `tls_data`), and `--tls`, `--tls-data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// No TLS.
    Off,
    /// TLS when the client asks for it.
    Optional,
    /// Clear text refused.
    Required,
}

impl From<TlsMode> for ringftp::TlsPolicy {
    fn from(m: TlsMode) -> Self {
        match m {
            TlsMode::Off => ringftp::TlsPolicy::Off,
            TlsMode::Optional => ringftp::TlsPolicy::Optional,
            TlsMode::Required => ringftp::TlsPolicy::Required,
        }
    }
}

/// `tls_client_auth = "off" | "request" | "require"`, and `--tls-client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// No client certificates.
    Off,
    /// Ask for one; connections without one are served.
    Request,
    /// Refuse connections without a valid one.
    Require,
}

/// `ktls = "auto" | "off"`, and `--ktls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KtlsName {
    /// kTLS where the kernel has it.
    Auto,
    /// Always rustls in user space.
    Off,
}

/// `log_format = "text" | "json"`, and `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `uploads = "keep" | "atomic"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uploads {
    Keep,
    Atomic,
}

impl From<Uploads> for UploadPolicy {
    fn from(uploads: Uploads) -> Self {
        match uploads {
            Uploads::Keep => UploadPolicy::Keep,
            Uploads::Atomic => UploadPolicy::Atomic,
        }
    }
}

/// `hash_uploads = "sha256" | "sha1" | "md5" | "crc32"`, and `--hash-uploads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HashUploads {
    Sha256,
    Sha1,
    Md5,
    Crc32,
}

impl From<HashUploads> for HashAlgo {
    fn from(algo: HashUploads) -> Self {
        match algo {
            HashUploads::Sha256 => HashAlgo::Sha256,
            HashUploads::Sha1 => HashAlgo::Sha1,
            HashUploads::Md5 => HashAlgo::Md5,
            HashUploads::Crc32 => HashAlgo::Crc32,
        }
    }
}

/// `engine = "auto" | "uring" | "epoll"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineName {
    /// io_uring if the kernel allows it, else epoll.
    Auto,
    /// io_uring only: fail to start where it is blocked.
    Uring,
    /// Plain epoll (tokio), e.g. under Docker's default seccomp profile.
    Epoll,
}

impl From<EngineName> for Engine {
    fn from(name: EngineName) -> Self {
        match name {
            EngineName::Auto => Engine::Auto,
            EngineName::Uring => Engine::Uring,
            EngineName::Epoll => Engine::Epoll,
        }
    }
}

/// One `[[users]]` table. Spans are kept where a check after parsing may need to point at
/// the line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    name: Spanned<String>,
    /// An argon2 PHC string, as `ringftpd --hash-password` prints.
    password_hash: Option<Spanned<String>>,
    /// Plain text, hashed at start-up: for quick set-ups only.
    password: Option<String>,
    /// Relative to the storage root; default: the root itself.
    home: Option<Spanned<PathBuf>>,
    read_only: Option<bool>,
    permissions: Option<Spanned<Vec<Permission>>>,
    max_sessions: Option<u32>,
    /// Bytes per second.
    rate_limit: Option<u64>,
    /// This user's control connection TLS policy, over the server's `tls`.
    tls: Option<TlsMode>,
    /// This user's data connection TLS policy, over the server's `tls_data`.
    tls_data: Option<TlsMode>,
}

/// One entry of a user's `permissions` list.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Permission {
    Read,
    Write,
    Delete,
    Rename,
    Mkdir,
}

/// How a configured user proves who they are.
pub enum Password {
    /// A PHC string, checked when the file is loaded.
    Hash(String),
    /// Plain text, hashed at start-up.
    Plain(String),
}

/// A user from the file, checked and ready for the user list.
pub struct ConfigUser {
    pub user: User,
    pub password: Password,
}

/// A problem in the file, located: the file, line and column, the key and what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    path: PathBuf,
    /// 1-based line and column, when the error points at a place in the file.
    position: Option<(usize, usize)>,
    /// The key as a path from the top (`users[0].home`), when known.
    key: Option<String>,
    /// The offending line, for syntax errors where no key can be named.
    line_text: Option<String>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ", line {line}, column {column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(text) = &self.line_text {
            write!(f, " (in `{text}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        path: path.to_owned(),
        position: None,
        key: None,
        line_text: None,
        message: format!("cannot read it: {err}"),
    })?;
    parse(&text).map_err(|err| err.locate(path, &text))
}

/// An error before it is tied to a file: a byte span into the text, and perhaps the key.
#[derive(Debug)]
pub struct Unlocated {
    span: Option<Range<usize>>,
    key: Option<String>,
    message: String,
}

impl Unlocated {
    fn locate(self, path: &Path, text: &str) -> ConfigError {
        let position = self.span.as_ref().map(|span| line_column(text, span.start));
        // Name the key the error points at, unless the check already did.
        let key = self.key.or_else(|| self.span.as_ref().and_then(|span| key_at(text, span.start)));
        let line_text = match (&key, position) {
            (None, Some((line, _))) => text
                .lines()
                .nth(line - 1)
                .map(|l| l.trim().chars().take(80).collect::<String>())
                .filter(|l| !l.is_empty()),
            _ => None,
        };
        ConfigError { path: path.to_owned(), position, key, line_text, message: self.message }
    }
}

/// Parses and checks the text of a configuration file.
pub fn parse(text: &str) -> Result<FileConfig, Unlocated> {
    let config: FileConfig = toml::from_str(text).map_err(|err| Unlocated {
        span: err.span(),
        key: None,
        message: err.message().to_owned(),
    })?;
    if let Some(home) = &config.anonymous_home {
        check_home(home).map_err(|message| Unlocated {
            span: Some(home.span()),
            key: Some("anonymous_home".into()),
            message,
        })?;
    }
    let mut names = HashSet::new();
    for (index, entry) in config.users.iter().enumerate() {
        entry.check().map_err(|(span, field, message)| Unlocated {
            span: Some(span),
            key: Some(format!("users[{index}]{}", field.map(|f| format!(".{f}")).unwrap_or_default())),
            message,
        })?;
        if !names.insert(entry.name.get_ref().as_str()) {
            return Err(Unlocated {
                span: Some(entry.name.span()),
                key: Some(format!("users[{index}].name")),
                message: format!("user {:?} is defined twice", entry.name.get_ref()),
            });
        }
    }
    Ok(config)
}

impl UserEntry {
    /// Checks what serde cannot; the error names the field (`None`: the entry as a whole).
    fn check(&self) -> Result<(), (Range<usize>, Option<&'static str>, String)> {
        let name = self.name.get_ref();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err((
                self.name.span(),
                Some("name"),
                format!("user name {name:?} is empty or contains whitespace or control characters"),
            ));
        }
        match (&self.password_hash, &self.password) {
            (Some(hash), None) => check_hash(hash.get_ref())
                .map_err(|err| (hash.span(), Some("password_hash"), format!("for {name:?}: {err}")))?,
            (None, Some(_)) => {}
            (Some(hash), Some(_)) => {
                return Err((
                    hash.span(),
                    Some("password_hash"),
                    format!("user {name:?} has both password_hash and password; keep one"),
                ))
            }
            (None, None) => {
                return Err((
                    self.name.span(),
                    None,
                    format!("user {name:?} needs password_hash (or password)"),
                ))
            }
        }
        if let Some(home) = &self.home {
            check_home(home).map_err(|err| (home.span(), Some("home"), err))?;
        }
        if let (Some(_), Some(permissions)) = (self.read_only, &self.permissions) {
            return Err((
                permissions.span(),
                Some("permissions"),
                format!("user {name:?} has both read_only and permissions; keep one"),
            ));
        }
        Ok(())
    }

    /// The user and password this entry describes (after [`UserEntry::check`]).
    fn to_user(&self) -> ConfigUser {
        let mut user = User::new(self.name.get_ref().as_str());
        if let Some(home) = &self.home {
            user = user.home(home.get_ref());
        }
        if let Some(read_only) = self.read_only {
            user = user.read_only(read_only);
        }
        if let Some(list) = &self.permissions {
            let mut p = Permissions::NONE;
            for permission in list.get_ref() {
                match permission {
                    Permission::Read => p.read = true,
                    Permission::Write => p.write = true,
                    Permission::Delete => p.delete = true,
                    Permission::Rename => p.rename = true,
                    Permission::Mkdir => p.mkdir = true,
                }
            }
            user = user.permissions(p);
        }
        if let Some(n) = self.max_sessions {
            user = user.max_sessions(n);
        }
        if let Some(rate) = self.rate_limit {
            user = user.rate_limit(rate);
        }
        if let Some(mode) = self.tls {
            user = user.tls(mode.into());
        }
        if let Some(mode) = self.tls_data {
            user = user.tls_data(mode.into());
        }
        let password = match (&self.password_hash, &self.password) {
            (Some(hash), _) => Password::Hash(hash.get_ref().clone()),
            (None, password) => Password::Plain(password.clone().unwrap_or_default()),
        };
        ConfigUser { user, password }
    }
}

impl FileConfig {
    /// The `[[users]]`, in file order.
    pub fn config_users(&self) -> Vec<ConfigUser> {
        self.users.iter().map(UserEntry::to_user).collect()
    }
}

/// A home must stay below the storage root: relative, without `..`.
fn check_home(home: &Spanned<PathBuf>) -> Result<(), String> {
    let home = home.get_ref();
    if home.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        Ok(())
    } else {
        Err(format!("{:?} must be relative to the storage root, without '..'", home.display().to_string()))
    }
}

/// Checks that `hash` is an argon2 PHC string argon2 can verify, so a bad paste fails at
/// start-up instead of locking the user out. (`UserList::user` only warns.)
fn check_hash(hash: &str) -> Result<(), String> {
    use argon2::password_hash::PasswordHash;
    let parsed = PasswordHash::new(hash)
        .map_err(|err| format!("password_hash is not a PHC string ({err}); make one with --hash-password"))?;
    argon2::Algorithm::try_from(parsed.algorithm)
        .map_err(|_| format!("password_hash algorithm {} is not argon2", parsed.algorithm))?;
    argon2::Params::try_from(&parsed).map_err(|err| format!("bad argon2 parameters ({err})"))?;
    if parsed.hash.is_none() {
        return Err("password_hash has no hash output".into());
    }
    Ok(())
}

fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<IpNet>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|s| crate::parse_network(s))
        .collect::<Result<_, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn public_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<crate::Public>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let entries = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(list) => list,
    };
    entries
        .iter()
        .map(|s| crate::parse_public(s))
        .collect::<Result<_, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn passive_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RangeInclusive<u16>>, D::Error> {
    let text = String::deserialize(d)?;
    crate::parse_range(&text).map(Some).map_err(serde::de::Error::custom)
}

/// 1-based line and column (in characters) of the byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key whose name or value is at byte offset `at`, as a path (`users[1].max_sessions`).
///
/// toml's errors carry a span but name only unknown keys; the parsed document knows the span
/// of every key and value, so the narrowest one around `at` names the key.
fn key_at(text: &str, at: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    visit_table(doc.get_ref(), "", at, &mut best);
    best.map(|(_, path)| path)
}

fn visit_table(table: &DeTable<'_>, prefix: &str, at: usize, best: &mut Option<(usize, String)>) {
    for (key, value) in table {
        let path =
            if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        consider(key.span(), &path, at, best);
        visit_value(value, &path, at, best);
    }
}

fn visit_value(value: &Spanned<DeValue<'_>>, path: &str, at: usize, best: &mut Option<(usize, String)>) {
    consider(value.span(), path, at, best);
    match value.get_ref() {
        // A table's span covers only its header (`[[users]]`), so look inside regardless.
        DeValue::Table(table) => visit_table(table, path, at, best),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                visit_value(item, &format!("{path}[{index}]"), at, best);
            }
        }
        _ => {}
    }
}

/// Keeps `path` if its span holds `at` and is the narrowest so far.
fn consider(span: Range<usize>, path: &str, at: usize, best: &mut Option<(usize, String)>) {
    let holds = span.contains(&at) || (span.is_empty() && span.start == at);
    if holds && best.as_ref().is_none_or(|(width, _)| span.len() < *width) {
        *best = Some((span.len(), path.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../ringftpd.example.toml");

    fn error(text: &str) -> String {
        parse(text).map(|_| ()).unwrap_err().locate(Path::new("t.toml"), text).to_string()
    }

    #[test]
    fn example_parses() {
        let loaded = parse(EXAMPLE).unwrap();
        assert!(loaded.users.is_empty(), "the example's users are commented out");
    }

    /// Every commented-out setting (`#key = value`, no space after `#`) is a real key with a
    /// valid value: uncommented all at once, the file still parses and passes the checks.
    #[test]
    fn example_settings_are_all_valid() {
        let text = uncomment(EXAMPLE);
        let loaded = parse(&text).unwrap_or_else(|e| panic!("{}\n{text}", e.locate(Path::new("x"), &text)));
        let c = &loaded;
        assert!(c.listen.is_some() && c.root.is_some() && c.passive_ports.is_some());
        assert!(c.public_address.is_some() && c.cores.is_some() && c.greeting.is_some());
        assert!(c.idle_timeout.is_some() && c.login_timeout.is_some() && c.data_timeout.is_some());
        assert!(c.max_line_length.is_some() && c.max_login_failures.is_some());
        assert!(c.ban_threshold.is_some() && c.ban_time.is_some() && c.ban_allow.is_some());
        assert!(c.user_lockout.is_some());
        assert!(c.max_sessions.is_some() && c.max_sessions_per_ip.is_some());
        assert!(c.shutdown_grace.is_some() && c.pipe_size.is_some() && c.splice.is_some());
        assert!(c.upload_pipe_size.is_some() && c.hash_uploads.is_some());
        assert!(c.uploads.is_some() && c.metrics.is_some() && c.log_level.is_some());
        assert!(c.log_format.is_some() && c.xferlog.is_some());
        assert!(c.engine.is_some());
        assert!(c.anonymous.is_some() && c.anonymous_home.is_some() && c.users_file.is_some());
        assert!(c.dangerous_allow_foreign_data_connections.is_some() && c.active_source_port.is_some());
        let users = loaded.config_users();
        assert!(users.len() >= 2, "the example shows a hashed and a plain-password user");
        assert!(users.iter().any(|u| matches!(u.password, Password::Hash(_))));
        assert!(users.iter().any(|u| u.user.is_read_only()));
        assert!(users.iter().any(|u| u.user.max_sessions.is_some() && u.user.rate_limit.is_some()));
    }

    /// The example's object-storage block (commented as prose, since it replaces `root`)
    /// parses once uncommented.
    #[test]
    fn example_storage_block_parses() {
        let text: String = EXAMPLE
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.starts_with("storage") || l.starts_with("s3_")))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&text).unwrap_or_else(|e| panic!("{}\n{text}", e.locate(Path::new("x"), &text)));
        assert_eq!(c.storage.as_deref(), Some("s3://my-bucket/ftp"));
        assert!(c.s3_endpoint.is_some() && c.s3_region.is_some() && c.s3_path_style == Some(true));
        assert!(c.s3_access_key_id.is_some() && c.s3_secret_access_key.is_some());
    }

    /// Turns `#key = ...` lines (and `#[[users]]`) into settings, leaving `# prose` alone.
    fn uncomment(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = error("greeting = \"hi\"\nidle_timout = 3\n");
        assert!(e.contains("line 2, column 1"), "{e}");
        assert!(e.contains("key `idle_timout`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword = \"p\"\nhome_dir = \"x\"\n");
        assert!(e.contains("line 4") && e.contains("`users[0].home_dir`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = error("idle_timeout = \"soon\"\n");
        assert!(e.contains("line 1, column 16, key `idle_timeout`"), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword = \"p\"\n\n[[users]]\nname = \"b\"\npassword = \"p\"\nmax_sessions = -1\n");
        assert!(e.contains("line 8") && e.contains("key `users[1].max_sessions`"), "{e}");
        let e = error("listen = [\"127.0.0.1:21\",\n  \"localhost\"]\n");
        assert!(e.contains("line 2") && e.contains("key `listen[1]`"), "{e}");
        let e = error("passive_ports = \"10-5\"\n");
        assert!(e.contains("key `passive_ports`") && e.contains("10-5"), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword = \"p\"\npermissions = [\"read\", \"exec\"]\n");
        assert!(e.contains("key `users[0].permissions[1]`") && e.contains("exec"), "{e}");
    }

    #[test]
    fn syntax_error_shows_the_line() {
        let e = error("greeting = \"a\"\ncores = \n");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("cores"), "{e}");
    }

    #[test]
    fn user_checks() {
        let e = error("[[users]]\nname = \"a\"\n");
        assert!(e.contains("line 2") && e.contains("users[0]") && e.contains("password_hash"), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword_hash = \"nope\"\n");
        assert!(e.contains("line 3") && e.contains("`users[0].password_hash`"), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword = \"p\"\nhome = \"../etc\"\n");
        assert!(e.contains("`users[0].home`") && e.contains(".."), "{e}");
        let e = error("[[users]]\nname = \"a\"\npassword = \"p\"\nread_only = true\npermissions = []\n");
        assert!(e.contains("`users[0].permissions`"), "{e}");
        let e =
            error("[[users]]\nname = \"a\"\npassword = \"p\"\n[[users]]\nname = \"a\"\npassword = \"q\"\n");
        assert!(e.contains("line 5") && e.contains("defined twice"), "{e}");
        let e = error("anonymous_home = \"/srv\"\n");
        assert!(e.contains("`anonymous_home`"), "{e}");
    }

    /// `public_address` as one comma-separated string or a list, in order; a bad entry is
    /// named with its key and line.
    #[test]
    fn public_address_string_or_list() {
        use crate::Public;
        let want = vec![
            Public::Rule("10.0.0.0/8".parse().unwrap(), "10.0.0.5".parse().unwrap()),
            Public::Ip("203.0.113.7".parse().unwrap()),
            Public::Name("ftp.example.net".into()),
        ];
        let one = parse("public_address = \"10.0.0.0/8=10.0.0.5, 203.0.113.7,ftp.example.net\"\n").unwrap();
        assert_eq!(one.public_address, Some(want.clone()));
        let list =
            parse("public_address = [\"10.0.0.0/8=10.0.0.5\", \"203.0.113.7\", \"ftp.example.net\"]\n")
                .unwrap();
        assert_eq!(list.public_address, Some(want));
        let e = error("greeting = \"hi\"\npublic_address = \"10.0.0.0/8=10.0.0.5,ftp_1.example\"\n");
        assert!(e.contains("line 2") && e.contains("key `public_address`"), "{e}");
        assert!(e.contains("\"ftp_1.example\" is not an IP address, a DNS name or CIDR=IP"), "{e}");
        let e = error("public_address = [\"10.0.0.0/8=\"]\n");
        assert!(e.contains("key `public_address`") && e.contains("is not an IP address"), "{e}");
    }

    #[test]
    fn permissions_list_and_read_only() {
        let loaded = parse(
            "[[users]]\nname = \"a\"\npassword = \"p\"\npermissions = [\"read\", \"mkdir\"]\n\
             [[users]]\nname = \"b\"\npassword = \"p\"\nread_only = true\n\
             [[users]]\nname = \"c\"\npassword = \"p\"\n",
        )
        .unwrap();
        let users = loaded.config_users();
        let p = users[0].user.permissions;
        assert!(p.read && p.mkdir && !p.write && !p.delete && !p.rename);
        assert_eq!(users[1].user.permissions, Permissions::READ_ONLY);
        assert_eq!(users[2].user.permissions, Permissions::ALL);
    }
}
