//! The listener over a real socket: the exposition, `/healthz`, and
//! `/readyz` following its probes (with the cache).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use telemetry::labels::{AuthMethod, AuthResult};
use telemetry::{Metrics, Probe, Readiness};
use tokio_util::sync::CancellationToken;

struct Switch {
    up: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Probe for Switch {
    fn name(&self) -> &'static str {
        "storage"
    }
    async fn check(&self) -> Result<(), String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("bucket unreachable\nsecond line".to_owned())
        }
    }
}

/// A plain HTTP/1.1 GET over a fresh socket: status, content type, body.
async fn get(url: &str, accept: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let accept = accept
        .map(|a| format!("accept: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{accept}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let metrics = Arc::new(Metrics::new());
    metrics.auth_attempt(AuthMethod::Publickey, AuthResult::Accepted);
    let up = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(AtomicUsize::new(0));
    let readiness = Readiness::new().with(
        Switch {
            up: Arc::clone(&up),
            asked: Arc::clone(&asked),
        },
        Duration::from_millis(300),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(telemetry::serve::serve(
        listener,
        Arc::clone(&metrics),
        Arc::new(readiness),
        stop.clone(),
    ));

    let (status, content_type, body) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.contains(
            "gatehouse_ssh_auth_attempts_total{method=\"publickey\",result=\"accepted\"} 1"
        )
    );
    assert!(!body.contains("# EOF"));

    let (_, content_type, body) = get(
        &format!("{base}/metrics"),
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"));

    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 200);

    // Within the cache the old answer stands, and the probe is not asked.
    up.store(false, Ordering::SeqCst);
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 200);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, _, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: storage: bucket unreachable second line\n");
    // Health is the process, not its dependencies.
    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);

    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 200);

    stop.cancel();
    server.await.unwrap().unwrap();
}
