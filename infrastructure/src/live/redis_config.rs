//! Where the pods' Redis is and how it is reached: one server, a master found through Redis
//! Sentinel, or a Redis Cluster. The settings come from `LCT_REDIS_URL` (fred's URL forms) or
//! from dedicated Sentinel settings, and are turned into fred's configuration here; fred then
//! follows failovers and slot moves itself.
//!
//! Nothing here ever echoes a URL or a password: errors and logs name hosts and ports only.

use fred::prelude::Config;
use fred::types::config::{ClusterDiscoveryPolicy, Server, ServerConfig};
use live::ports::LiveError;

/// The port of a sentinel named without one.
const SENTINEL_PORT: u16 = 26379;

/// How the pods reach Redis. Its `Debug` output leaves out the URL and the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (one server), `redis-sentinel://` or `rediss-sentinel://`
    /// (sentinels and `sentinelServiceName`), `redis-cluster://` or `rediss-cluster://` (one or
    /// more cluster nodes). With [`sentinels`](Self::sentinels) it may only be a `redis://` or
    /// `rediss://` URL, which then gives the servers' credentials, TLS and database (its host is
    /// not used: the sentinels name the master).
    pub url: Option<String>,
    /// Sentinels as `host:port` (port 26379 when left out); with
    /// [`sentinel_master`](Self::sentinel_master), the master is found through them.
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    pub sentinel_master: Option<String>,
    /// User name for the sentinels, when they require one (Redis ACL).
    pub sentinel_username: Option<String>,
    /// Password of the sentinels (their `requirepass`), when they require one; the servers'
    /// password is not sent to them.
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "***");
        f.debug_struct("RedisSettings")
            .field("url", &hidden(&self.url))
            .field("sentinels", &self.sentinels)
            .field("sentinel_master", &self.sentinel_master)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .finish()
    }
}

impl From<&str> for RedisSettings {
    /// Settings of a URL alone.
    fn from(url: &str) -> Self {
        RedisSettings { url: Some(url.to_owned()), ..RedisSettings::default() }
    }
}

impl From<&String> for RedisSettings {
    fn from(url: &String) -> Self {
        RedisSettings::from(url.as_str())
    }
}

/// The shape of the Redis deployment, which decides the pub/sub commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server: `PUBLISH` and `SUBSCRIBE`.
    Single,
    /// A master and its replicas watched by sentinels: like one server, at the master of the
    /// moment.
    Sentinel,
    /// Redis Cluster: sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`), so a message only touches the
    /// shard owning its channel's slot.
    Cluster,
}

/// fred's configuration of the settings, their topology and what to log for them.
#[derive(Debug)]
pub(super) struct Resolved {
    pub config: Config,
    pub topology: Topology,
    /// Hosts and ports (and the master's name), never credentials.
    pub endpoint: String,
}

fn invalid(what: &str) -> LiveError {
    LiveError(format!("the Redis settings are not valid: {what}"))
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Turns the settings into fred's configuration.
///
/// Errors: no Redis named, a URL fred cannot read (never quoted), a sentinel that is not
/// `host[:port]`, a master name without sentinels or the reverse, or a URL naming another
/// topology beside dedicated sentinels.
pub(super) fn resolve(settings: &RedisSettings) -> Result<Resolved, LiveError> {
    let url = non_empty(&settings.url);
    let sentinels: Vec<&str> = settings.sentinels.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    let master = non_empty(&settings.sentinel_master);
    let mut config = match (url, sentinels.is_empty(), master) {
        (_, false, None) => return Err(invalid("the sentinels are named without the master's name")),
        (_, true, Some(_)) => return Err(invalid("the master's name is given without sentinels")),
        (None, true, None) => return Err(invalid("no Redis URL and no sentinels")),
        (Some(url), true, None) => parse_url(url)?,
        (url, false, Some(master)) => {
            let mut config = match url {
                Some(url) => parse_url(url)?,
                None => Config::default(),
            };
            if !matches!(config.server, ServerConfig::Centralized { .. }) {
                return Err(invalid(
                    "with dedicated sentinels the URL may only be redis:// or rediss:// (credentials, TLS, database)",
                ));
            }
            let hosts = sentinels.iter().map(|s| sentinel_host(s)).collect::<Result<Vec<_>, _>>()?;
            config.server =
                ServerConfig::Sentinel { hosts, service_name: master.to_owned(), username: None, password: None };
            config
        }
    };
    if let ServerConfig::Sentinel { username, password, .. } = &mut config.server {
        if let Some(user) = non_empty(&settings.sentinel_username) {
            *username = Some(user.to_owned());
        }
        if let Some(secret) = non_empty(&settings.sentinel_password) {
            *password = Some(secret.to_owned());
        }
    }
    let hosts = |hosts: &[Server]| hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let (topology, endpoint) = match &mut config.server {
        ServerConfig::Centralized { server } => (Topology::Single, server.to_string()),
        ServerConfig::Sentinel { hosts: sentinels, service_name, .. } => {
            (Topology::Sentinel, format!("master {service_name} via sentinels {}", hosts(sentinels)))
        }
        ServerConfig::Clustered { hosts: nodes, policy } => {
            // When every node named in the settings is down, find the cluster through the nodes
            // last seen in it instead of giving up (the nodes named may be long gone).
            *policy = ClusterDiscoveryPolicy::UseCache;
            (Topology::Cluster, format!("cluster via {}", hosts(nodes)))
        }
    };
    Ok(Resolved { config, topology, endpoint })
}

/// fred's parse errors are not echoed: they could quote the URL, password included.
fn parse_url(url: &str) -> Result<Config, LiveError> {
    Config::from_url(url).map_err(|_| invalid("the Redis URL cannot be read"))
}

/// `host:port`, `host` or `[v6]:port`.
fn sentinel_host(entry: &str) -> Result<Server, LiveError> {
    let bad = || invalid(&format!("the sentinel {entry:?} is not host:port"));
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (entry, SENTINEL_PORT),
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    Ok(Server::new(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(url: &str) -> RedisSettings {
        RedisSettings::from(url)
    }

    fn sentinels(list: &[&str], master: &str) -> RedisSettings {
        RedisSettings {
            sentinels: list.iter().map(|s| (*s).to_owned()).collect(),
            sentinel_master: Some(master.to_owned()),
            ..RedisSettings::default()
        }
    }

    fn sentinel_parts(config: &Config) -> (Vec<String>, String, Option<String>, Option<String>) {
        match &config.server {
            ServerConfig::Sentinel { hosts, service_name, username, password } => (
                hosts.iter().map(ToString::to_string).collect(),
                service_name.clone(),
                username.clone(),
                password.clone(),
            ),
            other => panic!("not a sentinel configuration: {other:?}"),
        }
    }

    #[test]
    fn a_plain_url_is_one_server() {
        let resolved = resolve(&url("redis://:secret@redis.example:6390/2")).unwrap();
        assert_eq!(resolved.topology, Topology::Single);
        assert_eq!(resolved.endpoint, "redis.example:6390");
        assert_eq!(resolved.config.password.as_deref(), Some("secret"));
        assert_eq!(resolved.config.database, Some(2));
    }

    #[test]
    fn a_sentinel_url_names_the_sentinels_and_the_master() {
        let resolved = resolve(&url(
            "redis-sentinel://:pw@s1:26380/0?node=s2:26381&node=s3:26382&sentinelServiceName=lobby&sentinelPassword=spw",
        ))
        .unwrap();
        assert_eq!(resolved.topology, Topology::Sentinel);
        let (hosts, master, _, password) = sentinel_parts(&resolved.config);
        assert_eq!(hosts, ["s2:26381", "s3:26382", "s1:26380"]);
        assert_eq!(master, "lobby");
        assert_eq!(password.as_deref(), Some("spw"), "the sentinels' own password");
        assert_eq!(resolved.config.password.as_deref(), Some("pw"), "the servers' password");
        assert_eq!(resolved.endpoint, "master lobby via sentinels s2:26381,s3:26382,s1:26380");
    }

    #[test]
    fn dedicated_sentinel_settings_take_credentials_and_database_from_a_plain_url() {
        let mut settings = sentinels(&["s1:26379", "s2", " [::1]:26400 "], "mymaster");
        settings.url = Some("redis://default:pw@ignored-host:6379/3".to_owned());
        settings.sentinel_password = Some("spw".to_owned());
        let resolved = resolve(&settings).unwrap();
        assert_eq!(resolved.topology, Topology::Sentinel);
        let (hosts, master, username, password) = sentinel_parts(&resolved.config);
        assert_eq!(hosts, ["s1:26379", "s2:26379", "::1:26400"]);
        assert_eq!((master.as_str(), username, password.as_deref()), ("mymaster", None, Some("spw")));
        assert_eq!(resolved.config.username.as_deref(), Some("default"));
        assert_eq!(resolved.config.password.as_deref(), Some("pw"));
        assert_eq!(resolved.config.database, Some(3));
        assert!(!resolved.endpoint.contains("ignored-host"), "{}", resolved.endpoint);
    }

    #[test]
    fn dedicated_sentinels_without_a_url_send_no_password() {
        let resolved = resolve(&sentinels(&["127.0.0.1:26379"], "mymaster")).unwrap();
        assert_eq!(resolved.config.password, None);
        assert_eq!(sentinel_parts(&resolved.config).3, None);
    }

    #[test]
    fn a_cluster_url_finds_the_cluster_through_the_nodes_last_seen_too() {
        let resolved = resolve(&url("redis-cluster://:pw@n1:7000?node=n2:7001")).unwrap();
        assert_eq!(resolved.topology, Topology::Cluster);
        assert_eq!(resolved.endpoint, "cluster via n2:7001,n1:7000");
        match resolved.config.server {
            ServerConfig::Clustered { policy, .. } => assert_eq!(policy, ClusterDiscoveryPolicy::UseCache),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let only_sentinels = RedisSettings { sentinels: vec!["s1".to_owned()], ..RedisSettings::default() };
        let only_master = RedisSettings { sentinel_master: Some("m".to_owned()), ..RedisSettings::default() };
        let mut with_cluster_url = sentinels(&["s1"], "m");
        with_cluster_url.url = Some("redis-cluster://n1:7000".to_owned());
        for settings in [RedisSettings::default(), only_sentinels, only_master, with_cluster_url] {
            assert!(resolve(&settings).is_err(), "{settings:?}");
        }
        for bad in ["s1:notaport", "s1:99999", ":26379", "user@s1:26379"] {
            assert!(resolve(&sentinels(&[bad], "m")).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_url_and_the_password() {
        let mut settings = sentinels(&["s1"], "m");
        settings.url = Some("redis://:secret@h".to_owned());
        settings.sentinel_password = Some("secret".to_owned());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("secret") && shown.contains("s1"), "{shown}");
    }

    #[test]
    fn errors_never_quote_a_url() {
        let error = resolve(&url("not a url with secret")).unwrap_err();
        assert!(!error.0.contains("secret"), "{error}");
        let error = resolve(&url("redis-sentinel://:secret@s1:26379")).unwrap_err();
        assert!(!error.0.contains("secret"), "a sentinel URL without its master name: {error}");
    }
}
