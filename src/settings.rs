//! Configuration: every setting is an environment variable with a matching flag.

use clap::Parser;
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
    /// Directory of the embedded event store (used when no MongoDB is configured).
    #[arg(long, env = "LCT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// MongoDB connection string of a replica set; unset means the embedded store.
    #[arg(long, env = "LCT_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    /// MongoDB database name.
    #[arg(long, env = "LCT_MONGODB_DATABASE", default_value = "lct")]
    pub mongodb_database: String,
    /// Redis URL for fan-out across pods; unset means in-process fan-out.
    #[arg(long, env = "LCT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Elasticsearch URL for request logs; unset means stdout only.
    #[arg(long, env = "LCT_ELASTICSEARCH_URL", hide_env_values = true)]
    pub elasticsearch_url: Option<String>,
    /// Elastic APM Server URL for traces; unset means no tracing export.
    #[arg(long, env = "LCT_APM_SERVER_URL", hide_env_values = true)]
    pub apm_server_url: Option<String>,
    /// Public base URL of the join links in QR codes.
    #[arg(long, env = "LCT_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: String,
    /// Comma-separated origins allowed by CORS; unset allows any origin.
    #[arg(long, env = "LCT_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Environment name, part of log index names.
    #[arg(long, env = "LCT_ENVIRONMENT", default_value = "development")]
    pub environment: String,
    /// Log filter, e.g. `info` or `lct=debug,info`.
    #[arg(long, env = "LCT_LOG", default_value = "info")]
    pub log: String,
    /// Seconds allowed for draining connections after SIGTERM.
    #[arg(long, env = "LCT_SHUTDOWN_GRACE", default_value_t = 20)]
    pub shutdown_grace: u64,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Settings {
    pub fn mongodb_uri(&self) -> Option<&str> {
        non_empty(&self.mongodb_uri)
    }

    pub fn redis_url(&self) -> Option<&str> {
        non_empty(&self.redis_url)
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect()
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }
}
