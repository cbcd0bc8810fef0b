//! Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) driven over
//! the Chrome DevTools Protocol: a page is opened, navigated, asked questions with
//! `Runtime.evaluate`, and photographed with `Page.captureScreenshot`. A few dozen
//! lines over a websocket instead of a browser-automation crate.
//!
//! Chromium is started with the flags that keep it from reaching out on this closed
//! network (it would otherwise hang on component updates and sync) and with a fresh
//! profile directory. `EXPCLUSTER_TRACE_CDP=1` prints every DevTools call on stderr.

use crate::Proc;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// A headless Chromium with its DevTools endpoint on loopback.
pub struct Browser {
    _process: Proc,
    _profile: tempfile::TempDir,
    devtools: String,
}

/// One tab.
pub struct Page {
    socket: WebSocket<TcpStream>,
    next_id: u64,
}

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            return name;
        }
    }
    panic!("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)");
}

impl Browser {
    pub fn start() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("stderr");
        let process = Proc { child };
        // Chromium prints its DevTools address on stderr; the pipe is drained for
        // the browser's whole life so it never blocks on a full pipe.
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = address
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not announce its DevTools address within 60 s");
        let devtools = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// DevTools address")
            .to_owned();
        Self {
            _process: process,
            _profile: profile,
            devtools,
        }
    }

    /// The first tab (about:blank).
    pub fn page(&self) -> Page {
        let list = http_get_json(&self.devtools, "/json/list");
        let url = list
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|page| page["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {list}"))
            .to_owned();
        let stream = TcpStream::connect(&self.devtools).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket");
        let mut page = Page { socket, next_id: 1 };
        page.call("Page.enable", json!({}));
        page.call("Runtime.enable", json!({}));
        page
    }
}

/// A GET on loopback; the body (of its Content-Length: the DevTools server keeps the
/// connection open) as JSON.
fn http_get_json(host: &str, path: &str) -> Value {
    let stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone");
    write!(writer, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&body)))
}

impl Page {
    /// Calls a DevTools method and returns its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        if std::env::var_os("EXPCLUSTER_TRACE_CDP").is_some() {
            eprintln!("cdp → {method} {params}");
        }
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::text(request))
            .unwrap_or_else(|err| panic!("{method}: {err}"));
        loop {
            let message = self
                .socket
                .read()
                .unwrap_or_else(|err| panic!("{method}: no answer from chromium: {err}"));
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if answer["id"] == id {
                assert!(
                    answer.get("error").is_none(),
                    "{method} failed: {}",
                    answer["error"]
                );
                return answer["result"].clone();
            }
        }
    }

    /// Opens `url` and waits for its document to load.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "the page to load",
            Duration::from_secs(30),
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
    }

    /// The value of a JavaScript expression (a promise is awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (a real change on the page);
    /// returns its value, or panics after `timeout` with the page's text.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, expression: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!("timed out after {timeout:?} waiting for {what} ({expression}); the page says: {text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the viewport at `path`; returns its bytes.
    pub fn screenshot(&mut self, path: &Path) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::write(path, &bytes).expect("write screenshot");
        bytes
    }
}
