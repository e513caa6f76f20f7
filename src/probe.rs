//! The two probes and their verdicts.
//!
//! * API probe (`/api/health`): ready when it answers 2xx **and**, when the
//!   body is JSON with a `status` field, that field is `"ok"`. Paperclip
//!   answers `200 {"status":"starting"}` for ~160 ms while it recovers, so
//!   the status code alone reports ready too early.
//! * UI probe (`/`): ready when it answers 2xx with an HTML content type.
//!
//! No redirect is followed (a redirect would point the probe at someone
//! else), no proxy is used, bodies are bounded, every request has a timeout,
//! and nothing is sent unless a connect check shows the port listening.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Serialize;

use crate::config::ProbeSettings;

/// Larger API bodies are not parsed (Paperclip's is about 1 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// Per-request timeout of readiness probes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect-check timeout (loopback refuses at once; remote hosts may not).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Api,
    Ui,
}

/// One probe's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    pub probe: Which,
    pub url: String,
    pub ready: bool,
    /// HTTP status code, when a response arrived.
    pub http_status: Option<u16>,
    pub content_type: Option<String>,
    /// The API body's `status` field, when present.
    pub health_status: Option<String>,
    /// Why it is (not) ready, in words.
    pub detail: String,
    pub latency_ms: f64,
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.probe {
            Which::Api => "API",
            Which::Ui => "UI",
        };
        write!(f, "{name} {} → ", self.url)?;
        if let Some(code) = self.http_status {
            write!(f, "{code}")?;
            if let Some(ct) = &self.content_type {
                write!(f, " {}", crate::untrusted::escape(ct))?;
            }
            if let Some(s) = &self.health_status {
                write!(f, " status={s:?}")?;
            }
            write!(f, ": ")?;
        }
        write!(
            f,
            "{} ({}; {:.0} ms)",
            if self.ready { "ready" } else { "not ready" },
            crate::untrusted::escape(&self.detail),
            self.latency_ms
        )
    }
}

/// The API verdict from what arrived. Pure, so it is unit-tested and fuzzed.
/// Returns (ready, detail, the body's `status` field).
pub fn api_verdict(
    http_status: u16,
    content_type: Option<&str>,
    body: &[u8],
    truncated: bool,
) -> (bool, String, Option<String>) {
    if !(200..300).contains(&http_status) {
        return (false, format!("HTTP {http_status} is not 2xx"), None);
    }
    let says_json = content_type.is_some_and(|ct| {
        let m = media_type(ct);
        m == "application/json" || m.ends_with("+json")
    });
    if truncated {
        return (
            false,
            format!("body larger than {} KiB", MAX_BODY / 1024),
            None,
        );
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => match map.get("status") {
            None => (true, "2xx, JSON without a status field".into(), None),
            Some(serde_json::Value::String(s)) if s == "ok" => {
                (true, "status is \"ok\"".into(), Some(s.clone()))
            }
            Some(serde_json::Value::String(s)) => (
                false,
                format!("status is {s:?}, waiting for \"ok\""),
                Some(s.clone()),
            ),
            Some(other) => (
                false,
                format!("status is {}, expected the string \"ok\"", json_kind(other)),
                None,
            ),
        },
        Ok(_) => (true, "2xx, JSON without a status field".into(), None),
        Err(_) if says_json => (
            false,
            "body is not valid JSON though the content type says JSON".into(),
            None,
        ),
        Err(_) => (true, "2xx, body is not JSON".into(), None),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The UI verdict: 2xx and HTML.
pub fn ui_verdict(http_status: u16, content_type: Option<&str>) -> (bool, String) {
    if !(200..300).contains(&http_status) {
        return (false, format!("HTTP {http_status} is not 2xx"));
    }
    match content_type.map(media_type) {
        Some(m) if m == "text/html" || m == "application/xhtml+xml" => (true, "2xx HTML".into()),
        Some(m) => (false, format!("content type {m} is not HTML")),
        None => (false, "no content type, expected text/html".into()),
    }
}

fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `connection refused` rather than `Connection refused (os error 111)`.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "connect timed out".into(),
        _ => e.to_string(),
    }
}

/// Ready: the API passes, and the UI too when it is probed (`full` mode).
pub fn both_ready(api: &ProbeResult, ui: Option<&ProbeResult>) -> bool {
    api.ready && ui.is_none_or(|u| u.ready)
}

/// Both probes once, now: no HTTP request unless the port listens.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Why the connect check failed, when it did.
    pub connect_error: Option<String>,
    pub api: Option<ProbeResult>,
    pub ui: Option<ProbeResult>,
}

impl Snapshot {
    pub fn listening(&self) -> bool {
        self.connect_error.is_none()
    }

    pub fn ready(&self) -> bool {
        self.api
            .as_ref()
            .is_some_and(|a| both_ready(a, self.ui.as_ref()))
    }
}

/// Is something accepting TCP connections at these addresses?
pub async fn listening(addrs: &[SocketAddr], timeout: Duration) -> std::io::Result<()> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            // A connect to a port in the ephemeral range with nobody
            // listening can "succeed" by connecting the socket to itself
            // (TCP simultaneous open); that is not a listener.
            Ok(Ok(stream)) if is_self_connect(&stream) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused (self-connect)",
                )
            }
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}

fn is_self_connect(s: &tokio::net::TcpStream) -> bool {
    matches!((s.local_addr(), s.peer_addr()), (Ok(l), Ok(p)) if l == p)
}

/// Sends the probes for one instance.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
    pub settings: ProbeSettings,
}

impl Prober {
    pub fn new(settings: ProbeSettings, request_timeout: Duration) -> crate::error::Result<Self> {
        let mut builder = reqwest::Client::builder();
        // HTTP requests go to exactly the addresses the connect checks use
        // (for `localhost`, both loopbacks even where the resolver names one).
        if let Some(domain) = settings.url.domain() {
            builder = builder.resolve_to_addrs(domain, &settings.addrs);
        }
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(CONNECT_TIMEOUT))
            // A fresh connection per probe: on loopback it costs ~1 ms, it
            // re-checks that the port still listens, and it avoids the 40 ms
            // stall a kept-alive connection hits on servers that write
            // headers and body separately without TCP_NODELAY (Nagle +
            // delayed ACK).
            .pool_max_idle_per_host(0)
            .user_agent(concat!("paperclipd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::error::Error::os(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Prober { client, settings })
    }

    pub async fn listening(&self) -> std::io::Result<()> {
        listening(&self.settings.addrs, CONNECT_TIMEOUT).await
    }

    pub async fn api(&self) -> ProbeResult {
        self.probe(Which::Api, self.settings.api_url.clone()).await
    }

    pub async fn ui(&self) -> ProbeResult {
        self.probe(Which::Ui, self.settings.ui_url.clone()).await
    }

    /// The server's version from its API (`serverVersion`, else
    /// `version`), for a hot restart's intent; `None` when it does not say.
    pub async fn server_version(&self) -> Option<String> {
        let client = self.client.clone();
        let url = self.settings.api_url.clone();
        let task = tokio::spawn(async move {
            let mut resp = client.get(url).send().await.ok()?;
            let (body, _) = read_bounded(&mut resp).await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            ["serverVersion", "version"]
                .iter()
                .find_map(|k| v[*k].as_str().map(str::to_string))
        });
        task.await.ok().flatten()
    }

    /// Both probes at once (the UI only in `full` mode).
    pub async fn both(&self) -> (ProbeResult, Option<ProbeResult>) {
        if self.settings.mode == crate::cli::Mode::Full {
            let (a, u) = tokio::join!(self.api(), self.ui());
            (a, Some(u))
        } else {
            (self.api().await, None)
        }
    }

    /// A connect check, then both probes if the port listens.
    pub async fn snapshot(&self) -> Snapshot {
        match self.listening().await {
            Err(e) => Snapshot {
                connect_error: Some(describe_io(&e)),
                api: None,
                ui: None,
            },
            Ok(()) => {
                let (api, ui) = self.both().await;
                Snapshot {
                    connect_error: None,
                    api: Some(api),
                    ui,
                }
            }
        }
    }

    /// One request, run as its own task: when the caller stops waiting
    /// (the readiness timeout, a stop signal), the request still reads its
    /// bounded body and closes cleanly instead of hanging up mid-response,
    /// which a server logs as a broken pipe. It ends within the request
    /// timeout either way.
    async fn probe(&self, which: Which, url: Url) -> ProbeResult {
        let client = self.client.clone();
        let url_text = url.to_string();
        let start = Instant::now();
        let task = tokio::spawn(async move { request(&client, which, url).await });
        let mut r = task.await.unwrap_or_else(|e| ProbeResult {
            probe: which,
            url: url_text,
            ready: false,
            http_status: None,
            content_type: None,
            health_status: None,
            detail: format!("the probe task failed: {e}"),
            latency_ms: 0.0,
        });
        r.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        r
    }
}

/// Sends one probe and judges the answer. Every body is read (bounded), so
/// the connection closes cleanly after a complete response.
async fn request(client: &reqwest::Client, which: Which, url: Url) -> ProbeResult {
    let mut r = ProbeResult {
        probe: which,
        url: url.to_string(),
        ready: false,
        http_status: None,
        content_type: None,
        health_status: None,
        detail: String::new(),
        latency_ms: 0.0,
    };
    let mut resp = match client.get(url).send().await {
        Err(e) => {
            r.detail = describe_reqwest(&e);
            return r;
        }
        Ok(resp) => resp,
    };
    let code = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    r.http_status = Some(code);
    r.content_type = ct.as_deref().map(media_type);
    let body = read_bounded(&mut resp).await;
    match which {
        Which::Api => match body {
            Ok((body, truncated)) => {
                (r.ready, r.detail, r.health_status) =
                    api_verdict(code, ct.as_deref(), &body, truncated);
            }
            Err(e) => r.detail = format!("reading the body failed: {}", describe_reqwest(&e)),
        },
        // The UI verdict needs only the headers; the body is read so the
        // connection ends cleanly, and a failed read does not matter.
        Which::Ui => (r.ready, r.detail) = ui_verdict(code, ct.as_deref()),
    }
    r
}

/// `paperclipd probe`: both probes once, now.
pub async fn command(settings: ProbeSettings, json: bool) -> crate::error::Result<u8> {
    let prober = Prober::new(settings.clone(), REQUEST_TIMEOUT)?;
    let snap = prober.snapshot().await;
    let ready = snap.ready();
    if json {
        let v = serde_json::json!({
            "instance": settings.instance.id.as_str(),
            "url": settings.url.as_str(),
            "mode": settings.mode.as_str(),
            "listening": snap.listening(),
            "connect_error": snap.connect_error,
            "ready": ready,
            "probes": { "api": snap.api, "ui": snap.ui },
        });
        crate::log::out_json(&v)?;
    } else {
        match &snap.connect_error {
            Some(e) => crate::log::out(&format!(
                "not ready: nothing accepts connections on {} ({e}); no HTTP request sent",
                settings.url,
            )),
            None => {
                if let Some(a) = &snap.api {
                    crate::log::out(&format!("{a}"));
                }
                if let Some(u) = &snap.ui {
                    crate::log::out(&format!("{u}"));
                }
                crate::log::out(&format!(
                    "{} ({} mode)",
                    if ready { "ready" } else { "not ready" },
                    settings.mode.as_str()
                ));
            }
        }
    }
    Ok(if ready { 0 } else { 1 })
}

/// Reads at most [`MAX_BODY`] bytes; the rest is not read (the connection
/// is dropped instead).
async fn read_bounded(resp: &mut reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // The innermost cause says the most ("connection refused", "invalid
    // HTTP version parsed").
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let kind = if e.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    format!("{kind}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = include_str!("../tests/fixtures/health-ok.json");
    const STARTING: &str = include_str!("../tests/fixtures/health-starting.json");

    #[test]
    fn real_paperclip_bodies() {
        let (ok, _, s) = api_verdict(
            200,
            Some("application/json; charset=utf-8"),
            OK.as_bytes(),
            false,
        );
        assert!(ok);
        assert_eq!(s.as_deref(), Some("ok"));
        let (ok, detail, s) =
            api_verdict(200, Some("application/json"), STARTING.as_bytes(), false);
        assert!(!ok, "a 200 \"starting\" is not ready");
        assert_eq!(s.as_deref(), Some("starting"));
        assert!(detail.contains("starting"));
    }

    #[test]
    fn api_edge_cases() {
        assert!(!api_verdict(503, None, b"", false).0);
        assert!(api_verdict(204, None, b"", false).0);
        assert!(api_verdict(200, Some("text/plain"), b"OK", false).0);
        assert!(!api_verdict(200, Some("application/json"), b"{", false).0);
        assert!(!api_verdict(200, None, br#"{"status":1}"#, false).0);
        assert!(!api_verdict(200, None, br#"{"status":"ok"}"#, true).0);
        // Not JSON at all (invalid UTF-8): the status code decides.
        assert!(api_verdict(200, None, b"\xff\xfe garbage", false).0);
        assert!(!api_verdict(302, None, b"", false).0);
    }

    #[test]
    fn ui_needs_html() {
        assert!(ui_verdict(200, Some("text/html; charset=utf-8")).0);
        assert!(ui_verdict(200, Some("TEXT/HTML")).0);
        assert!(!ui_verdict(404, Some("text/html")).0);
        assert!(!ui_verdict(200, Some("application/json")).0);
        assert!(!ui_verdict(200, None).0);
    }
}
