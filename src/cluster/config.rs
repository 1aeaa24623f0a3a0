//! A `--redis` URL read into what the bridge needs ([`RedisConfig`]), and
//! what can be wrong with one ([`UrlError`]).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// What is wrong with a `--redis` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// It does not start with `redis://`.
    Scheme,
    /// `rediss://`: TLS to Redis, which the bridge does not speak.
    Tls,
    /// No host.
    Host,
    /// A port that is not a number.
    Port,
    /// A database that is not a number.
    Db,
    /// The host does not resolve.
    Resolve(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => {
                f.write_str("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]")
            }
            UrlError::Tls => f.write_str(
                "TLS to Redis (rediss://) is not supported: use redis://, through a TLS tunnel (e.g. stunnel) if the link needs encryption",
            ),
            UrlError::Host => f.write_str("no host"),
            UrlError::Port => f.write_str("bad port"),
            UrlError::Db => f.write_str("bad database number"),
            UrlError::Resolve(e) => write!(f, "cannot resolve the host: {e}"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Where the bridge connects and how it names channels.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Redis's address (resolved once, when the URL is read).
    pub addr: SocketAddr,
    /// `AUTH` user (Redis 6 ACL), if any: `AUTH USER PASSWORD`.
    pub username: Option<String>,
    /// `AUTH` password, if any.
    pub password: Option<String>,
    /// `SELECT` database, if any.
    pub db: Option<u32>,
    /// Channels are `PREFIX:room:TOPIC`.
    pub prefix: String,
    /// Bytes of publications kept while Redis is away.
    pub max_backlog: usize,
    /// The largest message published to Redis and accepted from it (the
    /// envelope comes on top: see docs/cluster.md).
    pub max_message: usize,
    /// Messages each topic's stream keeps in Redis for numbered
    /// publications (`--history`; 0: none).
    pub history: usize,
}

impl RedisConfig {
    /// Reads `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (resolving the
    /// host now, with the system resolver), with prefix `rookery`, a 1 MiB
    /// queue and 1 MiB messages. `PASSWORD@` without a colon is a password
    /// too. `rediss://` is refused: the bridge does not speak TLS.
    pub fn from_url(url: &str) -> Result<RedisConfig, UrlError> {
        if url.starts_with("rediss://") {
            return Err(UrlError::Tls);
        }
        let rest = url.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (username, password) = match auth.map(|a| a.split_once(':')) {
            Some(Some((user, pw))) => (Some(user), Some(pw)),
            Some(None) => (None, auth),
            None => (None, None),
        };
        let username = username.filter(|u| !u.is_empty()).map(str::to_string);
        let password = password.filter(|p| !p.is_empty()).map(str::to_string);
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, "")) => (hp, None),
            Some((hp, db)) => (hp, Some(db.parse().map_err(|_| UrlError::Db)?)),
            None => (rest, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || !p.is_empty() => {
                (h, p.parse::<u16>().map_err(|_| UrlError::Port)?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::Host);
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve(e.to_string()))?
            .next()
            .ok_or_else(|| UrlError::Resolve("no address".into()))?;
        Ok(RedisConfig {
            addr,
            username,
            password,
            db,
            prefix: "rookery".into(),
            max_backlog: 1 << 20,
            max_message: 1 << 20,
            history: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = RedisConfig::from_url("redis://:s3cret@127.0.0.1:7000/3").unwrap();
        assert_eq!(c.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.db, Some(3));
        let c = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(c.addr.port(), 6379);
        assert_eq!((c.password, c.db), (None, None));
        assert_eq!(
            RedisConfig::from_url("http://x").unwrap_err(),
            UrlError::Scheme
        );
        assert_eq!(
            RedisConfig::from_url("redis://1.2.3.4:x").unwrap_err(),
            UrlError::Port
        );
        assert_eq!(
            RedisConfig::from_url("redis://1.2.3.4/x").unwrap_err(),
            UrlError::Db
        );
        assert_eq!(
            RedisConfig::from_url("redis:///0").unwrap_err(),
            UrlError::Host
        );
        let c = RedisConfig::from_url("redis://alice:pw@127.0.0.1").unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("alice"), Some("pw"))
        );
        let c = RedisConfig::from_url("redis://pw@127.0.0.1").unwrap();
        assert_eq!((c.username, c.password.as_deref()), (None, Some("pw")));
        let e = RedisConfig::from_url("rediss://127.0.0.1:6380").unwrap_err();
        assert_eq!(e, UrlError::Tls);
        assert!(e.to_string().contains("TLS to Redis"), "{e}");
    }
}
