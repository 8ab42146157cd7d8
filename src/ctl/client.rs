//! The HTTP client of `ctl`: builds URLs under `--url`, sends the bearer token, applies the
//! time limits, and turns every answer into either the API's JSON or a [`CtlError`].
//!
//! Invariants: the token is only ever put in the `Authorization` header (never printed, never
//! in a URL); path parts are percent-encoded one segment each, so a glob or an id from the
//! command line cannot change which endpoint is called.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use super::answer::{Answer, answer, problem, revision_of, timed_out, transport};
use super::args::Global;
use super::error::CtlError;
use super::progress;

/// Ordinary requests: a little over the server's own 30 s limit, so its 503 arrives first.
pub const QUICK: Duration = Duration::from_secs(35);
/// Requests that wait for processes, checkpoints or the lease: over the server's 15 min.
pub const LONG: Duration = Duration::from_secs(15 * 60 + 15);
/// `health`: a liveness probe should fail fast.
pub const HEALTH: Duration = Duration::from_secs(5);
/// Time to open a connection, whatever the request.
const CONNECT: Duration = Duration::from_secs(10);

/// How long a request may take unless `--timeout` says otherwise.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    Quick,
    Long,
    Health,
    /// Exactly this long, even with `--timeout` (the command derived it from `--timeout`).
    Exactly(Duration),
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<HeaderValue>,
    timeout: Option<Duration>,
    /// `--json`: print answers as received.
    pub json: bool,
    /// Draw a spinner on stderr during long requests (a terminal, and not `--json`).
    pub progress: bool,
}

impl Client {
    /// A client for `global`; `env_token` is STATE_MANAGER_TOKEN (used when no `--token-file`).
    pub fn new(global: &Global, env_token: Option<String>) -> Result<Client, CtlError> {
        let base = parse_base(&global.url)?;
        let token = match &global.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| CtlError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                header(&text, &format!("--token-file {}", path.display()))?
            }
            None => match env_token {
                Some(t) => header(&t, "STATE_MANAGER_TOKEN")?,
                None => None,
            },
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT)
            .user_agent(concat!("state-manager-ctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CtlError::BadUrl {
                url: global.url.clone(),
                reason: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            base,
            token,
            timeout: global.timeout.map(|d| d.get()),
            json: global.json,
            progress: false,
        })
    }

    /// A request to the endpoint made of `path` segments under the base URL.
    pub fn request(&self, method: Method, path: &[&str]) -> Req<'_> {
        let mut url = self.base.clone();
        let mut full = url.path().trim_end_matches('/').to_string();
        // URLs resolve these as "here" and "up", so they cannot name anything: refuse them.
        let dots = path.iter().find(|s| matches!(**s, "." | ".."));
        let invalid = dots.map(|s| CtlError::BadArgument {
            value: s.to_string(),
            reason: "`.` and `..` are not names of processes or checkpoints".into(),
        });
        for segment in path {
            full.push('/');
            full.push_str(&encode_segment(segment));
        }
        url.set_path(&full);
        Req {
            client: self,
            method,
            url,
            body: None,
            raw: None,
            wait: Wait::Quick,
            auth: true,
            progress: None,
            invalid,
        }
    }

    pub fn get(&self, path: &[&str]) -> Req<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &[&str]) -> Req<'_> {
        self.request(Method::POST, path).wait(Wait::Long)
    }

    /// The `--timeout` given, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn deadline(&self, wait: Wait) -> Duration {
        match (wait, self.timeout) {
            (Wait::Exactly(d), _) | (_, Some(d)) => d,
            (Wait::Quick, None) => QUICK,
            (Wait::Long, None) => LONG,
            (Wait::Health, None) => HEALTH,
        }
    }
}

/// One request being built.
pub struct Req<'a> {
    client: &'a Client,
    method: Method,
    url: Url,
    body: Option<Value>,
    /// A JSON body sent as written (a config file, so the server keeps its layout).
    raw: Option<String>,
    wait: Wait,
    auth: bool,
    progress: Option<String>,
    /// Why this request must not be sent, found while building it.
    invalid: Option<CtlError>,
}

impl Req<'_> {
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(key, value);
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// `text` (JSON) as the body, byte for byte.
    pub fn json_text(mut self, text: String) -> Self {
        self.raw = Some(text);
        self
    }

    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Send no token (`/healthz`).
    pub fn no_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    /// Show a spinner saying `what` while the request runs (when the client allows it).
    pub fn progress(mut self, what: &str) -> Self {
        self.progress = Some(what.to_string());
        self
    }

    fn build(&self) -> reqwest::RequestBuilder {
        let mut b = self
            .client
            .http
            .request(self.method.clone(), self.url.clone());
        if let (true, Some(token)) = (self.auth, &self.client.token) {
            b = b.header(AUTHORIZATION, token.clone());
        }
        if let Some(body) = &self.body {
            b = b.json(body);
        }
        if let Some(text) = &self.raw {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text.clone());
        }
        b
    }

    /// Send the request and read the whole answer.
    pub async fn send(mut self) -> Result<Answer, CtlError> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        let deadline = self.client.deadline(self.wait);
        let request = self.build().timeout(deadline);
        let exchange = async {
            let resp = request.send().await?;
            let status = resp.status();
            let revision = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .and_then(revision_of);
            Ok::<_, reqwest::Error>((status, revision, resp.text().await?))
        };
        let spin = self.progress.as_deref().filter(|_| self.client.progress);
        let (status, revision, text) = progress::spin(spin, exchange)
            .await
            .map_err(|e| transport(&e, &self.url, deadline))?;
        let mut answer = answer(&self.url, status, text, self.no_token())?;
        answer.revision = revision;
        Ok(answer)
    }

    /// Send the request and return the open response once its status is a success (for
    /// streams: the time limit covers only the wait for the status line).
    pub async fn open(mut self) -> Result<reqwest::Response, CtlError> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        let deadline = self.client.deadline(self.wait);
        let resp = tokio::time::timeout(deadline, self.build().send())
            .await
            .map_err(|_| timed_out(&self.url, deadline))?
            .map_err(|e| transport(&e, &self.url, deadline))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(problem(status, text, self.no_token()))
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    fn no_token(&self) -> bool {
        self.auth && self.client.token.is_none()
    }
}

/// `segment` percent-encoded so that it stays one path segment whatever it holds: every byte
/// but the unreserved characters and `*` (globs read better unencoded) is escaped.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'*' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The base URL: `http://host[:port][/prefix]`.
fn parse_base(text: &str) -> Result<Url, CtlError> {
    let bad = |reason: &str| CtlError::BadUrl {
        url: text.to_string(),
        reason: reason.to_string(),
    };
    let url =
        Url::parse(text).map_err(|e| bad(&format!("{e}; write it like http://127.0.0.1:8080")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "this build speaks plain HTTP only; reach the API over http (e.g. through a port-forward or a local proxy)",
            ));
        }
        _ => return Err(bad("the scheme must be http, like http://127.0.0.1:8080")),
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(bad("it needs a host, like http://127.0.0.1:8080"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

/// The `Authorization` header for a token read from `origin`; `None` when it is blank.
fn header(token: &str, origin: &str) -> Result<Option<HeaderValue>, CtlError> {
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || CtlError::BadToken {
        origin: origin.to_string(),
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| bad())?;
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(url: &str) -> Global {
        Global {
            url: url.into(),
            token_file: None,
            json: false,
            timeout: None,
        }
    }

    #[test]
    fn segments_are_encoded_one_each_under_the_base() {
        let c = Client::new(&global("http://h:1/prefix"), None).unwrap();
        let r = c
            .get(&["processes", "web-[12]/x", "logs"])
            .query("tail", "3");
        assert_eq!(
            r.url().as_str(),
            "http://h:1/prefix/processes/web-%5B12%5D%2Fx/logs?tail=3"
        );
        let c = Client::new(&global("http://h:1"), None).unwrap();
        assert_eq!(c.get(&[""]).url().as_str(), "http://h:1/");
        assert_eq!(c.get(&["healthz"]).url().as_str(), "http://h:1/healthz");
    }

    #[tokio::test]
    async fn dot_segments_are_refused_before_anything_is_sent() {
        let c = Client::new(&global("http://127.0.0.1:1"), None).unwrap();
        for dots in [".", ".."] {
            let e = c.post(&["checkpoints", dots]).send().await.unwrap_err();
            assert!(matches!(e, CtlError::BadArgument { .. }), "{e:?}");
        }
    }

    #[test]
    fn bad_urls_and_tokens_are_usage_errors() {
        for url in [
            "localhost:8080",
            "ftp://h",
            "https://h",
            "http://h/?x=1",
            "nope",
        ] {
            let e = Client::new(&global(url), None).err().unwrap();
            assert_eq!(e.exit_code(), 2, "{url}: {e}");
        }
        let e = Client::new(&global("http://h"), Some("a\u{7}b".into()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("STATE_MANAGER_TOKEN"), "{e}");
        let blank = Client::new(&global("http://h"), Some(" \n".into())).unwrap();
        assert!(blank.token.is_none());
    }
}
