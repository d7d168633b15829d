//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for tests that must see what a real browser does:
//! cookie rules, redirects, forms, the DOM text of a page.
//!
//! chromedriver runs on a free loopback port in a process group of its
//! own; dropping the [`Browser`] ends the WebDriver session and kills that
//! group (chromedriver and the Chromium it started), by its own id.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use sshd_test::{ChildGuard, free_port, require_program};

pub struct Browser {
    pub client: Client,
    driver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let driver_bin = require_program("chromedriver");
        let chromium = require_program("chromium");
        let port = free_port();
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .process_group(0);
        let driver = ChildGuard::spawn(cmd).expect("spawn chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start: {}",
                driver.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.stderr_text()));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The text of the first element matching `css`, waiting up to 10 s
    /// for it to appear.
    pub async fn text(&self, css: &str) -> String {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.text().await.unwrap()
    }

    /// Types into the field matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css`, waiting for it to appear.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Ends the session cleanly; the drop kills what is left.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.pid())])
            .status();
    }
}
