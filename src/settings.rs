//! Configuration: every setting is an environment variable with a matching flag.

use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Real-time tournament-lobby server. With no configuration it runs as a single node with an
/// embedded event store in the data directory and in-process fan-out.
#[derive(Debug, Clone, Parser)]
#[command(name = "lct", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "LCT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Address of a second listener serving the operators' endpoints alone (`/liveness`,
    /// `/readiness`, `/metrics`, `/cluster`), outside the connection caps and rate limits of
    /// `LCT_LISTEN`, for probes and scrapes; unset means none. Never expose it publicly.
    #[arg(long, env = "LCT_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Directory of the embedded event store (used when no MongoDB is configured).
    #[arg(long, env = "LCT_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// MongoDB connection string of a replica set; unset means the embedded store.
    #[arg(long, env = "LCT_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    /// MongoDB database name.
    #[arg(long, env = "LCT_MONGODB_DATABASE", default_value = "lct")]
    pub mongodb_database: String,
    /// MongoDB user name; overrides the one in the connection string.
    #[arg(long, env = "LCT_MONGODB_USERNAME")]
    pub mongodb_username: Option<String>,
    /// MongoDB password; overrides the one in the connection string. Never logged.
    #[arg(long, env = "LCT_MONGODB_PASSWORD", hide_env_values = true)]
    pub mongodb_password: Option<infrastructure::mongo::Secret>,
    /// Database that holds the MongoDB user (authSource).
    #[arg(long, env = "LCT_MONGODB_AUTH_SOURCE")]
    pub mongodb_auth_source: Option<String>,
    /// TLS to MongoDB: true or false; unset keeps the connection string's choice.
    #[arg(long, env = "LCT_MONGODB_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub mongodb_tls: Option<bool>,
    /// PEM file of the certificate authorities MongoDB's certificates are checked against.
    #[arg(long, env = "LCT_MONGODB_TLS_CA_FILE")]
    pub mongodb_tls_ca_file: Option<PathBuf>,
    /// PEM file with the client certificate and key presented to MongoDB.
    #[arg(long, env = "LCT_MONGODB_TLS_CERT_KEY_FILE")]
    pub mongodb_tls_cert_key_file: Option<PathBuf>,
    /// Largest number of connections per MongoDB server (driver default: 10).
    #[arg(long, env = "LCT_MONGODB_MAX_POOL_SIZE")]
    pub mongodb_max_pool_size: Option<u32>,
    /// MongoDB server selection and connect timeout in ms (default 2000, or the connection
    /// string's values).
    #[arg(long, env = "LCT_MONGODB_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub mongodb_timeout_ms: Option<u64>,
    /// Upper bound in ms of one event store operation against MongoDB, retries included.
    #[arg(long, env = "LCT_MONGODB_OPERATION_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub mongodb_operation_timeout_ms: u64,
    /// Retryable writes to MongoDB: true or false; unset keeps the connection string's choice
    /// (on by default).
    #[arg(long, env = "LCT_MONGODB_RETRY_WRITES", value_parser = clap::builder::BoolishValueParser::new())]
    pub mongodb_retry_writes: Option<bool>,
    /// Redis for fan-out and shared state across pods: `redis://` or `rediss://` (one server),
    /// `redis-sentinel://` (sentinels and `?sentinelServiceName=<master>`), `redis-cluster://`
    /// (cluster nodes); unset, without sentinels, means in-process fan-out. Beside
    /// `LCT_REDIS_SENTINELS` only its credentials, TLS and database are used. Never logged.
    #[arg(long, env = "LCT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis Sentinels (comma-separated `host:port`) through which the Redis master is found
    /// and followed across failovers; needs `LCT_REDIS_SENTINEL_MASTER`.
    #[arg(long, env = "LCT_REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,
    /// Name of the master the sentinels watch (`sentinel monitor <name> ...`).
    #[arg(long, env = "LCT_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// User name for the sentinels, when they require one.
    #[arg(long, env = "LCT_REDIS_SENTINEL_USERNAME")]
    pub redis_sentinel_username: Option<String>,
    /// Password of the sentinels, when they require one (the Redis password is not sent to
    /// them). Never logged.
    #[arg(long, env = "LCT_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,
    /// Elasticsearch URL for request logs; unset means stdout only.
    #[arg(long, env = "LCT_ELASTICSEARCH_URL", hide_env_values = true)]
    pub elasticsearch_url: Option<String>,
    /// Elasticsearch API key (the base64 `id:key` form), sent as `Authorization: ApiKey`; user
    /// and password can instead be part of the URL. Never logged.
    #[arg(long, env = "LCT_ELASTICSEARCH_API_KEY", hide_env_values = true)]
    pub elasticsearch_api_key: Option<String>,
    /// Request logs held in memory while Elasticsearch is slow or unreachable; beyond that they
    /// are dropped and counted in `lct_log_events_dropped_total`.
    #[arg(long, env = "LCT_ELASTICSEARCH_BUFFER", default_value_t = 10_000, value_parser = count_up_to::<1_000_000>)]
    pub elasticsearch_buffer: usize,
    /// Elastic APM Server URL for traces; unset means no tracing export.
    #[arg(long, env = "LCT_APM_SERVER_URL", hide_env_values = true)]
    pub apm_server_url: Option<String>,
    /// APM Server secret token, sent as `Authorization: Bearer`. Never logged.
    #[arg(long, env = "LCT_APM_SECRET_TOKEN", hide_env_values = true)]
    pub apm_secret_token: Option<String>,
    /// Name of this pod in logs, traces and metrics; unset means the host name.
    #[arg(long, env = "LCT_POD_NAME")]
    pub pod_name: Option<String>,
    /// Address of this pod shown to operators in `GET /cluster`; unset means the bound listen
    /// address.
    #[arg(long, env = "LCT_POD_ADDRESS")]
    pub pod_address: Option<String>,
    /// Period in ms of this pod's heartbeat into the pod registry; a pod whose heartbeat is half
    /// a period late is taken for dead.
    #[arg(long, env = "LCT_HEARTBEAT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_ms: u64,
    /// Public base URL of the join links in QR codes.
    #[arg(long, env = "LCT_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: String,
    /// Comma-separated origins allowed by CORS; unset allows any origin.
    #[arg(long, env = "LCT_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Environment name, part of log index names (at most 64 characters).
    #[arg(long, env = "LCT_ENVIRONMENT", default_value = "development", value_parser = environment_name)]
    pub environment: String,
    /// Log filter of stdout and of the logs shipped to Elasticsearch, e.g. `info` or
    /// `lct=debug,info`: levels, and `target=level` directives.
    #[arg(long, env = "LCT_LOG", default_value = "info", value_parser = log_filter)]
    pub log: String,
    /// Seconds allowed for draining connections after SIGTERM (at most an hour).
    #[arg(long, env = "LCT_SHUTDOWN_GRACE", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace: u64,
    /// Longest time in ms from a commit to its delivery to every live connection of the
    /// tournament on every pod, whatever happens to its publication on the bus (with the event
    /// store reachable): each pod checks the store's versions every third of it.
    #[arg(long, env = "LCT_DELIVERY_BOUND_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(30..))]
    pub delivery_bound_ms: u64,
    /// Messages queued per live connection before a client that does not keep up is cut off.
    #[arg(long, env = "LCT_WS_QUEUE", default_value_t = 256, value_parser = count_up_to::<65_536>)]
    pub ws_queue: usize,
    /// Team clicks being recorded at once on this pod (waiting for the event store or Redis)
    /// beyond which more are refused as overloaded.
    #[arg(long, env = "LCT_CLICKS_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub clicks_in_flight: u64,
    /// Publications waiting for the bus (events, presence and click lists) from which team
    /// clicks are refused as overloaded, so that events keep room to be published.
    #[arg(long, env = "LCT_CLICK_REFUSAL_BACKLOG", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    pub click_refusal_backlog: u64,
    /// Hub invocations (team clicks) one live connection may make per second, bursts of twice
    /// that; above 0. They count against the client's command rate too.
    #[arg(long, env = "LCT_WS_INVOCATIONS_PER_SECOND", default_value_t = 10.0, value_parser = positive_rate)]
    pub ws_invocations_per_second: f64,
    /// Commands (POSTs, and hub invocations over all its connections) one client address may
    /// send per second, bursts of twice that; 0 is unlimited.
    #[arg(long, env = "LCT_RATE_LIMIT_COMMANDS", default_value_t = 50.0, value_parser = rate_or_unlimited)]
    pub rate_limit_commands: f64,
    /// New WebSocket connections one client address may open per second, bursts of twice that;
    /// 0 is unlimited.
    #[arg(long, env = "LCT_RATE_LIMIT_CONNECTIONS", default_value_t = 20.0, value_parser = rate_or_unlimited)]
    pub rate_limit_connections: f64,
    /// Header with the client address set by trusted proxies (e.g. `x-forwarded-for`); unset
    /// uses the peer address. Behind proxies, the per-client connection cap counts live
    /// connections per forwarded address.
    #[arg(long, env = "LCT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Proxies in front of lct that each append the address they saw to the client IP header:
    /// the client address is the entry this many places from the right (1: the right-most).
    #[arg(long, env = "LCT_TRUSTED_PROXY_HOPS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub trusted_proxy_hops: u32,
    /// Milliseconds a connection has to send a request's head, from its opening and from the
    /// end of the previous answer (so also how long an idle kept-alive connection stays open).
    #[arg(long, env = "LCT_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Longest pause in ms while a request body arrives; the request then gets 408.
    #[arg(long, env = "LCT_BODY_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,
    /// Longest time in ms for a whole request, body included, until its answer starts; 408
    /// beyond.
    #[arg(long, env = "LCT_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Longest time in ms a connection may take no bytes while the server has some to write to
    /// it (a client that does not read its answers); the connection is then closed.
    #[arg(long, env = "LCT_SEND_TIMEOUT_MS", default_value_t = 40_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout_ms: u64,
    /// Open connections (HTTP and WebSocket) in all; more are answered 503 and closed. Keep it
    /// below the process's file descriptor limit. 0 is no cap.
    #[arg(long, env = "LCT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections one client address may hold; more are answered 503. 0 is no cap.
    #[arg(long, env = "LCT_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// How much of the v1 API (REST routes and the SignalR hub) is served: `open` (all),
    /// `read-only` (no writes, no hub invocations) or `off` (none).
    #[arg(long = "v1", env = "LCT_V1", default_value = "open",
          value_parser = clap::builder::PossibleValuesParser::new(api::v1::V1Mode::NAMES)
              .try_map(|mode| mode.parse::<api::v1::V1Mode>()))]
    pub v1: api::v1::V1Mode,
    /// Key of the v2 organiser and player tokens (at least 16 characters), the same on every
    /// pod; unset keeps a random key in the data directory.
    #[arg(long, env = "LCT_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Without a command, lct serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Checks or repairs the embedded event store of the data directory.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum StoreCommand {
    /// Reads the whole event log, decoding every event, and reports what it holds and any
    /// damage. Safe while lct runs. Exit status: 0 when lct can start on the directory, 1 when
    /// it needs `lct store repair`, 2 when it cannot be read.
    Verify,
    /// Moves everything in the event log that is not a valid record to the `quarantine`
    /// directory and keeps every valid record byte for byte. Refuses to run while an lct process
    /// has the directory open. Exit status: 0 when the log is sound afterwards, 2 otherwise.
    Repair,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Settings {
    pub fn mongodb_uri(&self) -> Option<&str> {
        non_empty(&self.mongodb_uri)
    }

    /// Redis of the pods, when a URL or sentinels are configured.
    pub fn redis(&self) -> Option<infrastructure::live::RedisSettings> {
        let sentinels: Vec<String> =
            self.redis_sentinels.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let master = non_empty(&self.redis_sentinel_master);
        if non_empty(&self.redis_url).is_none() && sentinels.is_empty() && master.is_none() {
            return None;
        }
        Some(infrastructure::live::RedisSettings {
            url: non_empty(&self.redis_url).map(str::to_owned),
            sentinels,
            sentinel_master: master.map(str::to_owned),
            sentinel_username: non_empty(&self.redis_sentinel_username).map(str::to_owned),
            sentinel_password: non_empty(&self.redis_sentinel_password).map(str::to_owned),
        })
    }

    pub fn admin_listen(&self) -> Option<&str> {
        non_empty(&self.admin_listen)
    }

    pub fn elasticsearch_url(&self) -> Option<&str> {
        non_empty(&self.elasticsearch_url)
    }

    pub fn apm_server_url(&self) -> Option<&str> {
        non_empty(&self.apm_server_url)
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect()
    }

    pub fn delivery_bound(&self) -> Duration {
        Duration::from_millis(self.delivery_bound_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// Checks what the parser cannot check without repeating a secret in its error (it quotes
    /// the value): the URLs that may hold credentials.
    pub fn check(&self) -> Result<(), String> {
        let urls = [("LCT_ELASTICSEARCH_URL", self.elasticsearch_url()), ("LCT_APM_SERVER_URL", self.apm_server_url())];
        for (name, url) in urls {
            if url.is_some_and(|url| !is_http_url(url)) {
                return Err(format!("{name} is not an http:// or https:// URL with a host"));
            }
        }
        Ok(())
    }

    /// The server's timeouts and connection caps.
    pub fn server_options(&self) -> api::server::ServerOptions {
        api::server::ServerOptions {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            send_timeout: Duration::from_millis(self.send_timeout_ms),
            drain_grace: self.shutdown_grace(),
        }
    }
}

/// A rate of more than 0 per second.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a rate above 0 per second")),
    }
}

/// A rate per second, or 0 for unlimited. (A negative rate or NaN would silently lift the
/// limit or refuse everything.)
fn rate_or_unlimited(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a rate per second (0 for unlimited)")),
    }
}

/// A count from 1 to `MAX`.
fn count_up_to<const MAX: usize>(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(count) if (1..=MAX).contains(&count) => Ok(count),
        _ => Err(format!("`{text}` is not a count from 1 to {MAX}")),
    }
}

/// Whether `text` is an `http://` or `https://` URL with a host.
fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// An environment name short enough for the log index names it is part of.
fn environment_name(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("an environment name is needed".to_owned()),
        name if name.chars().count() > 64 => Err("an environment name has at most 64 characters".to_owned()),
        name => Ok(name.to_owned()),
    }
}

/// A log filter whose every directive is a level, or `target=level` (a target alone would mean
/// "that target only, at every level": a misspelt level such as `warning` would silence
/// everything else).
fn log_filter(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let directives: Vec<&str> = text.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err("a log filter is needed, e.g. `info`".to_owned());
    }
    for directive in &directives {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` is not a level ({}); write `{directive}=<level>` for a target",
                LEVELS.join(", ")
            ));
        }
    }
    let filter = directives.join(",");
    tracing_subscriber::EnvFilter::builder().parse(&filter).map_err(|error| format!("`{text}`: {error}"))?;
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn an_invocation_rate_of_zero_or_less_is_refused_rather_than_refusing_every_invocation() {
        for rate in ["0", "-1", "NaN", "inf", "ten"] {
            let parsed = Settings::try_parse_from(["lct", "--ws-invocations-per-second", rate]);
            assert!(parsed.is_err(), "{rate} accepted");
        }
        let parsed = Settings::try_parse_from(["lct", "--ws-invocations-per-second", "2.5"]).unwrap();
        assert_eq!(parsed.ws_invocations_per_second, 2.5);
    }

    #[test]
    fn values_that_would_silently_misbehave_are_refused_at_start_up() {
        let refused = [
            // NaN refused every command; a negative rate lifted the limit.
            ("--rate-limit-commands", "NaN"),
            ("--rate-limit-commands", "-1"),
            ("--rate-limit-connections", "NaN"),
            ("--rate-limit-connections", "-5"),
            ("--rate-limit-connections", "inf"),
            // 0 silently became 1; past a limit the start-up panicked.
            ("--elasticsearch-buffer", "0"),
            ("--elasticsearch-buffer", "18446744073709551615"),
            ("--ws-queue", "0"),
            // Panicked at shutdown.
            ("--shutdown-grace", "18446744073709551615"),
            // Every store operation failed.
            ("--mongodb-operation-timeout-ms", "0"),
            ("--mongodb-timeout-ms", "0"),
            // Invalid index names: every log document refused.
            ("--environment", &"x".repeat(300)),
            ("--environment", " "),
            // A misspelt level was a target: nothing else was logged.
            ("--log", "warning"),
            ("--log", "inf"),
            ("--log", "lct=debug,infoo"),
            ("--log", ""),
            ("--log", "lct=loud"),
        ];
        for (flag, value) in refused {
            assert!(Settings::try_parse_from(["lct", flag, value]).is_err(), "{flag} {value:?} accepted");
        }
        // Every request to these failed with a bare "builder error"; the check names the setting
        // without repeating its value, which may hold a password.
        for (flag, url) in [
            ("--elasticsearch-url", "es:9200"),
            ("--elasticsearch-url", "elasticsearch.internal:9200"),
            ("--elasticsearch-url", "http://user:hunter2@es:9200 x"),
            ("--apm-server-url", "ftp://apm:8200"),
        ] {
            let error = Settings::try_parse_from(["lct", flag, url]).unwrap().check().unwrap_err();
            assert!(!error.contains("hunter2") && !error.contains("es:9200"), "{error}");
        }

        let accepted = Settings::try_parse_from([
            "lct",
            "--rate-limit-commands",
            "0",
            "--rate-limit-connections",
            "2.5",
            "--elasticsearch-url",
            "https://user:pw@es.internal:9200",
            "--apm-server-url",
            "",
            "--elasticsearch-buffer",
            "1",
            "--ws-queue",
            "8",
            "--shutdown-grace",
            "0",
            "--log",
            "lct=debug, WARN ,api::context=info",
        ])
        .unwrap();
        assert_eq!(accepted.rate_limit_commands, 0.0);
        assert_eq!(accepted.elasticsearch_url(), Some("https://user:pw@es.internal:9200"));
        assert_eq!(accepted.apm_server_url(), None);
        assert_eq!(accepted.log, "lct=debug,WARN,api::context=info");
        assert_eq!(accepted.check(), Ok(()));
        assert_eq!(Settings::try_parse_from(["lct"]).unwrap().log, "info");
    }
}
