//! Just enough of the Chrome DevTools Protocol to drive a headless Chromium through a page the
//! way a person would: open a URL, fill a field, press a button, read what the page says.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with one page; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    pub page: Page,
}

/// A page to drive.
pub struct Page {
    ws: Ws,
    next_id: u64,
}

impl Browser {
    pub async fn launch(binary: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints the DevTools address on stderr; keep draining it afterwards so a
        // full pipe never blocks the browser.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address");
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let list: Value = reqwest::get(format!("http://{host}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page_ws = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(page_ws).await.unwrap();
        Browser {
            child,
            _profile: profile,
            page: Page { ws, next_id: 1 },
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    async fn send(&mut self, method: &str, params: Value) -> Result<Value, String> {
        use futures::{SinkExt, StreamExt};
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .map_err(|_| format!("no answer to {method}"))?;
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    return Err(err.to_string());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    pub async fn navigate(&mut self, url: &str) {
        self.send("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
    }

    /// Evaluates JavaScript in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression).await.expect("evaluate")
    }

    async fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self
            .send(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(e.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until the page's visible text contains `needle`; returns the text.
    pub async fn wait_for_text(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            // During a navigation the old document is gone: just ask again.
            if let Ok(v) = self
                .try_eval("document.body ? document.body.innerText : ''")
                .await
            {
                last = v.as_str().unwrap_or_default().to_string();
                if last.contains(needle) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the page never showed {needle:?}; it shows:\n{last}");
    }

    /// The page as a base64 PNG, for looking at it while developing.
    pub async fn screenshot_base64(&mut self) -> String {
        let r = self
            .send("Page.captureScreenshot", json!({ "format": "png" }))
            .await
            .expect("screenshot");
        r["data"].as_str().unwrap_or_default().to_string()
    }
}
