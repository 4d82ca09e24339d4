//! Name resolution for the webhook senders' HTTP agents. ureq looks the host up before every
//! request, even when it then reuses a pooled connection, and with a timeout set (ours always
//! is) it does each lookup on a thread of its own: one thread spawned per POST, the largest
//! single cost of a delivered telegram in the bench (`docs/bench-history.md`). Here an address
//! literal (`127.0.0.1`, `[::1]`) is never looked up, and a name is looked up with ureq's own
//! resolver at most once per [`TTL`] (and again at once after a failed lookup), which is what a
//! host's DNS answer may be relied on for.
//!
//! ureq marks its resolver interface as outside its semver promise (`ureq::unversioned`); the
//! lock file pins the version this is written against.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up name is used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(60);

/// ureq's resolver with address literals short-cut and names cached for [`TTL`].
#[derive(Debug, Default)]
pub struct CachedResolver {
    inner: DefaultResolver,
    /// The last lookup: "host:port", when, the addresses.
    last: Mutex<Option<(String, Instant, Vec<SocketAddr>)>>,
}

impl CachedResolver {
    fn out(&self, addrs: &[SocketAddr]) -> ResolvedSocketAddrs {
        let mut out = self.empty();
        for a in addrs.iter().take(16) {
            out.push(*a);
        }
        out
    }
}

/// The host's address when it is written as one (the brackets of an IPv6 literal removed).
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

impl Resolver for CachedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let port = authority
            .port_u16()
            .or_else(|| match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
            .ok_or(ureq::Error::HostNotFound)?;
        if let Some(ip) = literal(authority.host()) {
            return Ok(self.out(&[SocketAddr::new(ip, port)]));
        }
        let key = format!("{}:{port}", authority.host());
        if let Ok(last) = self.last.lock()
            && let Some((k, at, addrs)) = last.as_ref()
            && *k == key
            && at.elapsed() < TTL
        {
            return Ok(self.out(addrs));
        }
        let found = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((key, Instant::now(), found.to_vec()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachedResolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        let config = Config::default();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout).map(|a| a.to_vec())
    }

    #[test]
    fn literals_are_used_as_they_are() {
        let r = CachedResolver::default();
        assert_eq!(
            resolve(&r, "http://127.0.0.1:8080/in").unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/in").unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://10.1.2.3/in").unwrap(),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
        assert!(
            r.last.lock().unwrap().is_none(),
            "no lookup, nothing cached"
        );
    }

    #[test]
    fn a_name_is_looked_up_once_per_ttl() {
        let r = CachedResolver::default();
        let first = resolve(&r, "http://localhost:9/in").unwrap();
        assert!(first.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        let at = r.last.lock().unwrap().as_ref().unwrap().1;
        assert_eq!(resolve(&r, "http://localhost:9/x").unwrap(), first);
        assert_eq!(
            r.last.lock().unwrap().as_ref().unwrap().1,
            at,
            "served from the cache"
        );
        // Another port is another key.
        let other = resolve(&r, "http://localhost:10/in").unwrap();
        assert!(other.iter().all(|a| a.port() == 10));
    }
}
