//! Configuration of the MongoDB event store and its translation into driver options.
//!
//! The connection string names the replica set; the separate settings (credentials, TLS, pool
//! size, timeouts, retryable writes) override what the string says, so secrets can come from
//! their own variables. Nothing here logs or prints a password: `Debug` redacts it, and the
//! description used in log lines names only hosts, replica set, database and flags.

use mongodb::options::{ClientOptions, ConnectionString, Credential, ServerAddress, Tls, TlsOptions};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Server selection and connect timeout used when neither the settings nor the connection
/// string give one: short, so that a command answers 503 within a few seconds while the
/// replica set is unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Upper bound of one store operation, retries included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(5_000);

/// A secret (a password) that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Everything the MongoDB event store is configured with.
#[derive(Clone)]
pub struct MongoSettings {
    /// Connection string (`mongodb://` or `mongodb+srv://`); may carry credentials.
    pub uri: String,
    pub database: String,
    /// Overrides the user name of the connection string.
    pub username: Option<String>,
    /// Overrides the password of the connection string.
    pub password: Option<Secret>,
    /// Database the credentials are defined in (`authSource`).
    pub auth_source: Option<String>,
    /// `Some(true)` forces TLS on, `Some(false)` off; `None` keeps the connection string's choice
    /// (TLS is switched on anyway when a CA or client certificate file is given).
    pub tls: Option<bool>,
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file with the client certificate and its private key (X.509 authentication or mTLS).
    pub tls_cert_key_file: Option<PathBuf>,
    pub max_pool_size: Option<u32>,
    /// Server selection and connect timeout; `None` keeps the connection string's values, or
    /// [`DEFAULT_TIMEOUT`] where it has none.
    pub timeout: Option<Duration>,
    /// Upper bound of one store operation, retries included.
    pub operation_timeout: Duration,
    /// Retryable writes; `None` keeps the connection string's choice (the driver's default is on).
    pub retry_writes: Option<bool>,
}

impl MongoSettings {
    /// Settings with only a connection string and a database; everything else at its default.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            username: None,
            password: None,
            auth_source: None,
            tls: None,
            tls_ca_file: None,
            tls_cert_key_file: None,
            max_pool_size: None,
            timeout: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            retry_writes: None,
        }
    }

    /// Checks the connection string without any network access (no DNS, no server).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database.trim().is_empty() {
            return Err(ConfigError("the MongoDB database name is empty".into()));
        }
        // MongoDB's rules for database names: every operation on another name fails.
        if self.database.len() >= 64
            || self.database.contains(['/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0'])
        {
            return Err(ConfigError(
                "the MongoDB database name must be under 64 bytes, without /\\. \"$*<>:|? or spaces".into(),
            ));
        }
        ConnectionString::parse(&self.uri).map_err(|e| {
            // The driver's reason may quote pieces of the user info it could not tell apart
            // from the hosts (a password with an unescaped `?`, `@` or `/`).
            if self.uri.contains('@') {
                ConfigError(
                    "invalid MongoDB connection string (the reason is withheld: the string holds credentials; \
                     percent-encode special characters in the user name and password)"
                        .into(),
                )
            } else {
                ConfigError(format!("invalid MongoDB connection string: {}", e.kind))
            }
        })?;
        Ok(())
    }

    /// Whether resolving the connection string needs DNS look-ups (`mongodb+srv://`).
    pub fn uses_srv(&self) -> bool {
        self.uri.trim_start().starts_with("mongodb+srv://")
    }

    /// Driver options: the connection string's, with these settings applied over them. For an
    /// SRV connection string this resolves DNS records; for a plain one it touches no network.
    pub async fn client_options(&self) -> mongodb::error::Result<ClientOptions> {
        let mut options = ClientOptions::parse(self.uri.as_str()).await?;
        self.apply(&mut options);
        Ok(options)
    }

    /// Applies the explicit settings over options parsed from the connection string.
    pub fn apply(&self, options: &mut ClientOptions) {
        if options.app_name.is_none() {
            options.app_name = Some("lct".into());
        }
        match self.timeout {
            Some(timeout) => {
                options.server_selection_timeout = Some(timeout);
                options.connect_timeout = Some(timeout);
            }
            None => {
                options.server_selection_timeout.get_or_insert(DEFAULT_TIMEOUT);
                options.connect_timeout.get_or_insert(DEFAULT_TIMEOUT);
            }
        }
        if let Some(size) = self.max_pool_size {
            options.max_pool_size = Some(size);
        }
        if let Some(retry) = self.retry_writes {
            options.retry_writes = Some(retry);
        }
        if self.username.is_some() || self.password.is_some() || self.auth_source.is_some() {
            let credential = options.credential.get_or_insert_with(Credential::default);
            if let Some(username) = &self.username {
                credential.username = Some(username.clone());
            }
            if let Some(password) = &self.password {
                credential.password = Some(password.expose().to_owned());
            }
            if let Some(source) = &self.auth_source {
                credential.source = Some(source.clone());
            }
        }
        let wants_tls_files = self.tls_ca_file.is_some() || self.tls_cert_key_file.is_some();
        match (self.tls, wants_tls_files) {
            (Some(false), _) => options.tls = Some(Tls::Disabled),
            (Some(true), _) | (None, true) => {
                let mut tls = match options.tls.take() {
                    Some(Tls::Enabled(tls)) => tls,
                    _ => TlsOptions::default(),
                };
                if let Some(ca) = &self.tls_ca_file {
                    tls.ca_file_path = Some(ca.clone());
                }
                if let Some(cert) = &self.tls_cert_key_file {
                    tls.cert_key_file_path = Some(cert.clone());
                }
                options.tls = Some(Tls::Enabled(tls));
            }
            (None, false) => {}
        }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &redact_uri(&self.uri))
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("auth_source", &self.auth_source)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_key_file", &self.tls_cert_key_file)
            .field("max_pool_size", &self.max_pool_size)
            .field("timeout", &self.timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("retry_writes", &self.retry_writes)
            .finish()
    }
}

/// The connection string with any `user:password@` replaced by `***@`, and the values of
/// query options that name a password, token or secret replaced by `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "***".into();
    };
    // Everything up to the last '@' may be user info: a password may hold an unescaped `?`,
    // `/` or `@` (the driver refuses such a string, and its parts must not be shown either).
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let (pre_options, query) = match rest.split_once('?') {
        Some((pre, query)) => (pre, Some(query)),
        None => (rest, None),
    };
    let hosts = format!("{credentials}{pre_options}");
    let Some(query) = query else {
        return format!("{scheme}://{hosts}");
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let lower = key.to_ascii_lowercase();
            if ["password", "token", "secret"].iter().any(|word| lower.contains(word)) {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{scheme}://{hosts}?{}", query.join("&"))
}

/// What the log line about the store may say: no credentials, no connection string.
pub fn describe(options: &ClientOptions) -> String {
    let hosts: Vec<String> = options
        .hosts
        .iter()
        .map(|host| match host {
            ServerAddress::Tcp { host, port } => format!("{host}:{}", port.unwrap_or(27017)),
            other => other.to_string(),
        })
        .collect();
    format!(
        "hosts={} replica_set={} tls={} authenticated={} max_pool_size={} server_selection_timeout_ms={}",
        hosts.join(","),
        options.repl_set_name.as_deref().unwrap_or("-"),
        matches!(options.tls, Some(Tls::Enabled(_))),
        options.credential.is_some(),
        options.max_pool_size.map_or_else(|| "default".to_owned(), |n| n.to_string()),
        options.server_selection_timeout.map_or(0, |t| t.as_millis()),
    )
}

/// The MongoDB configuration cannot work, whatever the state of the servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    async fn options(settings: &MongoSettings) -> ClientOptions {
        settings.client_options().await.unwrap()
    }

    #[tokio::test]
    async fn defaults_keep_commands_short_while_the_set_is_unreachable() {
        let settings = MongoSettings::new("mongodb://a:27017,b:27017/?replicaSet=rs0", "lct");
        let options = options(&settings).await;
        assert_eq!(options.server_selection_timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(options.connect_timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(options.repl_set_name.as_deref(), Some("rs0"));
        assert_eq!(options.app_name.as_deref(), Some("lct"));
    }

    #[tokio::test]
    async fn the_connection_string_timeouts_win_over_the_default_but_not_over_the_setting() {
        let uri = "mongodb://a:27017/?replicaSet=rs0&serverSelectionTimeoutMS=1500&connectTimeoutMS=700";
        let options_from_uri = options(&MongoSettings::new(uri, "lct")).await;
        assert_eq!(options_from_uri.server_selection_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(options_from_uri.connect_timeout, Some(Duration::from_millis(700)));

        let mut settings = MongoSettings::new(uri, "lct");
        settings.timeout = Some(Duration::from_millis(300));
        let overridden = options(&settings).await;
        assert_eq!(overridden.server_selection_timeout, Some(Duration::from_millis(300)));
        assert_eq!(overridden.connect_timeout, Some(Duration::from_millis(300)));
    }

    #[tokio::test]
    async fn pool_retryable_writes_credentials_and_tls_come_from_the_settings() {
        let mut settings = MongoSettings::new("mongodb://uri-user:uri-pass@a:27017/?replicaSet=rs0", "lct");
        settings.max_pool_size = Some(42);
        settings.retry_writes = Some(false);
        settings.password = Some(Secret::new("from-env"));
        settings.auth_source = Some("admin".into());
        settings.tls_ca_file = Some(PathBuf::from("/etc/ssl/mongo-ca.pem"));
        let options = options(&settings).await;
        assert_eq!(options.max_pool_size, Some(42));
        assert_eq!(options.retry_writes, Some(false));
        let credential = options.credential.clone().unwrap();
        assert_eq!(credential.username.as_deref(), Some("uri-user"));
        assert_eq!(credential.password.as_deref(), Some("from-env"));
        assert_eq!(credential.source.as_deref(), Some("admin"));
        match &options.tls {
            Some(Tls::Enabled(tls)) => {
                assert_eq!(tls.ca_file_path.as_deref(), Some(std::path::Path::new("/etc/ssl/mongo-ca.pem")))
            }
            other => panic!("TLS should be on, got {other:?}"),
        }

        let mut off = MongoSettings::new("mongodb://a:27017/?tls=true", "lct");
        off.tls = Some(false);
        assert!(matches!(self::options(&off).await.tls, Some(Tls::Disabled)));
        let untouched = self::options(&MongoSettings::new("mongodb://a:27017/", "lct")).await;
        assert!(untouched.tls.is_none() && untouched.credential.is_none());
    }

    #[tokio::test]
    async fn credentials_never_show_in_debug_output_or_the_description() {
        let mut settings = MongoSettings::new("mongodb://admin:uri-secret@a:27017,b:27018/?replicaSet=rs0", "lct");
        settings.password = Some(Secret::new("env-secret"));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("uri-secret") && !debug.contains("env-secret"), "{debug}");
        assert!(debug.contains("***@a:27017,b:27018"), "{debug}");
        let description = describe(&options(&settings).await);
        assert!(!description.contains("secret") && !description.contains("admin"), "{description}");
        assert!(description.contains("hosts=a:27017,b:27018") && description.contains("authenticated=true"));
    }

    #[test]
    fn redaction_keeps_the_hosts_and_drops_the_user_info() {
        assert_eq!(redact_uri("mongodb://u:p@h1,h2/db?x=1"), "mongodb://***@h1,h2/db?x=1");
        assert_eq!(redact_uri("mongodb://h1/?replicaSet=rs0"), "mongodb://h1/?replicaSet=rs0");
        assert_eq!(redact_uri("mongodb+srv://u:p%40ss@cluster.example.net"), "mongodb+srv://***@cluster.example.net");
        assert_eq!(redact_uri("not a uri"), "***");
        assert_eq!(redact_uri("mongodb://u:p/q@h/?tls=true"), "mongodb://***@h/?tls=true");
        // A password with an unescaped `?` or `@`: nothing of it is kept.
        assert_eq!(redact_uri("mongodb://lct:s3cr?t@db1/?replicaSet=rs0"), "mongodb://***@db1/?replicaSet=rs0");
        assert_eq!(redact_uri("mongodb://lct:p@ss@db1/"), "mongodb://***@db1/");
        assert_eq!(
            redact_uri("mongodb://h/?tlsCertificateKeyFilePassword=pw&replicaSet=rs0"),
            "mongodb://h/?tlsCertificateKeyFilePassword=***&replicaSet=rs0"
        );
    }

    #[test]
    fn a_connection_string_the_driver_cannot_read_is_refused_without_repeating_its_password() {
        // The driver cuts the string at the first `?`: its error quotes the password's pieces.
        for uri in ["mongodb://lct:s3cr?t@db1/?replicaSet=rs0", "mongodb://lct:12345?t@db1/"] {
            let error = MongoSettings::new(uri, "lct").validate().unwrap_err().to_string();
            for piece in ["s3cr", "12345", "t@db1"] {
                assert!(!error.contains(piece), "{uri}: {error}");
            }
        }
        // Without credentials, the driver's reason helps and is kept.
        let error = MongoSettings::new("mongodb://a/?serverSelectionTimeoutMS=soon", "lct").validate().unwrap_err();
        assert!(error.to_string().contains("serverselectiontimeoutms"), "{error}");
    }

    #[test]
    fn malformed_connection_strings_and_empty_databases_are_refused_without_a_server() {
        assert!(MongoSettings::new("http://a", "lct").validate().is_err());
        assert!(MongoSettings::new("mongodb://a/?serverSelectionTimeoutMS=soon", "lct").validate().is_err());
        assert!(MongoSettings::new("mongodb://a/", " ").validate().is_err());
        for database in ["a.b", "a b", "a/b", "a$", &"x".repeat(64)] {
            assert!(MongoSettings::new("mongodb://a/", database).validate().is_err(), "{database}");
        }
        assert!(MongoSettings::new("mongodb://a,b/?replicaSet=rs0", "lct").validate().is_ok());
        assert!(MongoSettings::new("mongodb://a,b/?replicaSet=rs0", "lct_prod-2").validate().is_ok());
        assert!(MongoSettings::new("mongodb+srv://cluster.example.net/", "lct").uses_srv());
    }
}
