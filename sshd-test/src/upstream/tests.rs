//! The upstream served for real: requests over loopback with hyper's client
//! (HTTP/1.1 and h2c), tokio-tungstenite for the WebSocket, and a JWKS served
//! by a second small server for the assertion checks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::*;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge: it speaks h2 on a cleartext
/// connection without asking to upgrade, as the proxy will.
fn h2c() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = client.request(request).await.expect("send request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(client, Method::GET, url, headers, Bytes::new()).await
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern_byte).collect()
}

#[tokio::test]
async fn echo_reports_the_request_as_received() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let answer = send(
        &http1(),
        Method::POST,
        &format!("{}/p/q?q=1&r=%20", upstream.url),
        &[("X-Dup", "a"), ("x-other", "z"), ("x-dup", "b")],
        "hello",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers.get(VERSION_HEADER).map(|v| v.as_bytes()),
        Some(&b"HTTP/1.1"[..])
    );
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let echo = answer.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/p/q?q=1&r=%20");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["authority"], upstream.addr.to_string());
    assert_eq!(echo["body_bytes"], 5);
    let headers: Vec<(String, String)> =
        serde_json::from_value(echo["headers"].clone()).expect("headers are pairs");
    let dups: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name == "x-dup")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(dups, ["a", "b"], "{headers:?}");
    assert!(headers.contains(&("host".into(), upstream.addr.to_string())));
    assert_eq!(
        echo["assertion"],
        json!({"present": false, "valid": false, "error": "no assertion header",
               "kid": null, "claims": null})
    );
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_same_port() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let answer = get(&h2c(), &format!("{}/x?y=2", upstream.url), &[("x-a", "1")]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers.get(VERSION_HEADER).map(|v| v.as_bytes()),
        Some(&b"HTTP/2.0"[..])
    );
    let echo = answer.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/x?y=2");
    assert_eq!(echo["authority"], upstream.addr.to_string());
    // The same port still speaks HTTP/1.1.
    let echo = get(&http1(), &upstream.url, &[]).await.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["path"], "/");
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn set_cookie_is_sent() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let answer = get(&http1(), &format!("{}/set-cookie", upstream.url), &[]).await;
    assert_eq!(
        answer.headers.get("set-cookie").map(|v| v.as_bytes()),
        Some(&b"upstream=1; Path=/"[..])
    );
    assert_eq!(answer.json()["path"], "/set-cookie");
}

#[tokio::test]
async fn download_streams_exactly_n_pattern_bytes() {
    let upstream = Upstream::start(UpstreamOptions::default());
    for client in [http1(), h2c()] {
        for n in [0usize, 1, 250, 251, 64_256, 3 * 1024 * 1024 + 7] {
            let url = format!("{}/stream/download?bytes={n}", upstream.url);
            let answer = get(&client, &url, &[]).await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(
                answer.headers.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/octet-stream"[..])
            );
            assert_eq!(answer.body.len(), n);
            assert!(answer.body == pattern(n), "pattern mismatch for {n} bytes");
        }
    }
    let bad = get(&http1(), &format!("{}/stream/download", upstream.url), &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn upload_counts_and_hashes_the_body() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let data = pattern(5 * 1024 * 1024 + 3);
    let url = format!("{}/stream/upload", upstream.url);
    for (client, method) in [(http1(), Method::PUT), (h2c(), Method::POST)] {
        let answer = send(&client, method, &url, &[], data.clone()).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.json(),
            json!({"bytes": data.len(), "sha256": sha256_hex(&data)})
        );
    }
    let empty = send(&http1(), Method::POST, &url, &[], Bytes::new()).await;
    assert_eq!(empty.json(), json!({"bytes": 0, "sha256": sha256_hex(b"")}));
    // Other methods get the echo, like any other request.
    assert_eq!(get(&http1(), &url, &[]).await.json()["method"], "GET");
}

#[tokio::test]
async fn slow_waits_before_the_headers() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let started = Instant::now();
    let answer = get(&http1(), &format!("{}/slow?ms=300", upstream.url), &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ok");
}

#[tokio::test]
async fn websocket_echoes_until_close() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let url = format!("ws://{}/ws", upstream.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let big: Vec<u8> = pattern(1024 * 1024);
    let messages = [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(big),
        Message::text(""),
    ];
    for message in messages {
        socket.send(message.clone()).await.expect("send");
        let echoed = socket.next().await.expect("echo").expect("echo ok");
        assert_eq!(echoed, message);
    }
    socket.close(None).await.expect("send close");
    let mut saw_close = false;
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Close(_)) => saw_close = true,
            Ok(other) => panic!("unexpected {other:?} after close"),
            Err(_) => break,
        }
    }
    assert!(saw_close, "the server answers a close with a close");
    // A plain request to /ws is echoed; a broken upgrade is refused.
    let plain = get(&http1(), &format!("{}/ws", upstream.url), &[]).await;
    assert_eq!(plain.json()["path"], "/ws");
    let broken = get(
        &http1(),
        &format!("{}/ws", upstream.url),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    )
    .await;
    assert!(broken.status.is_client_error(), "{}", broken.status);
}

#[test]
fn works_from_sync_code_and_stops_on_drop() {
    let upstream = Upstream::start(UpstreamOptions::default());
    let addr = upstream.addr;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    use std::io::{Read as _, Write as _};
    stream
        .write_all(b"GET /sync HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"path\":\"/sync\""), "{answer}");
    // A connection left open must not keep the server alive, and is closed.
    let mut idle = std::net::TcpStream::connect(addr).expect("connect idle");
    drop(upstream);
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut byte = [0u8; 1];
    match idle.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("idle connection still open after drop: {other:?}"),
    }
}

// ---- assertions ----

/// Signs tokens as the proxy would.
struct Signer {
    kid: String,
    key: EcdsaKeyPair,
}

impl Signer {
    fn new(kid: &str) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load key");
        Signer {
            kid: kid.into(),
            key,
        }
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
               "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn claims(aud: &str, exp_in: i64) -> Value {
    json!({"iss": "https://gatehouse.test", "aud": aud, "sub": "alice",
           "email": "alice@example.com", "groups": ["ops", "dev"],
           "iat": now(), "exp": now() + exp_in})
}

/// Serves a JWKS document that the test may change, and counts fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

async fn jwks_server(keys: Vec<Value>) -> JwksServer {
    let document = Arc::new(Mutex::new(json!({"keys": keys})));
    let fetches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = Router::new().route(
        "/.well-known/gatehouse/jwks.json",
        axum::routing::get({
            let document = Arc::clone(&document);
            let fetches = Arc::clone(&fetches);
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().expect("jwks lock").to_string();
                ([(header::CONTENT_TYPE, "application/json")], body)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
    let addr = listener.local_addr().expect("jwks addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url: format!("http://{addr}/.well-known/gatehouse/jwks.json"),
        document,
        fetches,
    }
}

/// Re-encodes `token` with its signature bytes changed by `change`.
fn with_signature(token: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    change(&mut signature);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn assertion_of(upstream: &Upstream, tokens: &[&str]) -> Value {
    let headers: Vec<(&str, &str)> = tokens
        .iter()
        .map(|t| ("x-gatehouse-assertion", *t))
        .collect();
    get(&http1(), &format!("{}/app", upstream.url), &headers)
        .await
        .json()["assertion"]
        .clone()
}

#[tokio::test]
async fn assertions_are_verified() {
    let signer = Signer::new("k1");
    let jwks = jwks_server(vec![signer.jwk()]).await;
    let upstream = Upstream::start(UpstreamOptions {
        jwks_url: Some(jwks.url.clone()),
        issuer: Some("https://gatehouse.test".into()),
        audience: Some("app".into()),
    });

    let good = signer.sign(&claims("app", 60));
    let report = assertion_of(&upstream, &[&good]).await;
    assert_eq!(report["present"], true);
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["error"], Value::Null);
    assert_eq!(report["kid"], "k1");
    assert_eq!(report["claims"]["sub"], "alice");
    assert_eq!(report["claims"]["groups"], json!(["ops", "dev"]));

    let tampered = {
        let (_, rest) = good.split_once('.').expect("three parts");
        let (_, signature) = rest.split_once('.').expect("three parts");
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let mut forged = claims("app", 60);
        forged["groups"] = json!(["admin"]);
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(forged.to_string())
        )
    };
    let unsigned = {
        let header = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims("app", 60).to_string())
        )
    };
    let mut future = claims("app", 120);
    future["iat"] = json!(now() + 60);
    let cases: Vec<(String, &str)> = vec![
        (signer.sign(&claims("app", -10)), "expired"),
        (signer.sign(&claims("other-app", 60)), "wrong audience"),
        (
            signer.sign(&{
                let mut c = claims("app", 60);
                c["iss"] = json!("https://evil.test");
                c
            }),
            "wrong issuer",
        ),
        (signer.sign(&future), "issued in the future"),
        (tampered, "bad signature"),
        (unsigned, "unsupported alg"),
        (with_signature(&good, |sig| sig[10] ^= 1), "bad signature"),
        (
            with_signature(&good, |sig| sig.truncate(63)),
            "bad signature",
        ),
        (format!("{good}x"), "malformed token"),
        ("not-a-token".into(), "malformed token"),
    ];
    for (token, error) in &cases {
        let report = assertion_of(&upstream, &[token]).await;
        assert_eq!(report["present"], true);
        assert_eq!(report["valid"], false, "{error}: {report}");
        assert_eq!(report["error"], *error, "{report}");
    }
    // The expired token's claims are still shown, to explain the failure.
    let report = assertion_of(&upstream, &[&cases[0].0]).await;
    assert_eq!(report["claims"]["sub"], "alice");

    let report = assertion_of(&upstream, &[&good, &good]).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["error"], "duplicate assertion header");

    // One fetch served all of the above.
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.requests(), 1 + cases.len() as u64 + 2);
}

#[tokio::test]
async fn rotated_keys_are_fetched_again() {
    let old = Signer::new("old");
    let new = Signer::new("new");
    let jwks = jwks_server(vec![old.jwk()]).await;
    let upstream = Upstream::start(UpstreamOptions {
        jwks_url: Some(jwks.url.clone()),
        issuer: None,
        audience: None,
    });
    let report = assertion_of(&upstream, &[&old.sign(&claims("any", 60))]).await;
    assert_eq!(report["valid"], true, "{report}");

    // The proxy starts signing with a key the JWKS does not list yet.
    let rotated = new.sign(&claims("any", 60));
    let report = assertion_of(&upstream, &[&rotated]).await;
    assert_eq!(report["error"], "unknown kid", "{report}");
    assert_eq!(report["kid"], "new");

    // Once it is published, the next unknown-kid miss refetches, but no
    // sooner than a second after the last fetch.
    *jwks.document.lock().expect("jwks lock") = json!({"keys": [old.jwk(), new.jwk()]});
    let fetches_before = jwks.fetches.load(Ordering::SeqCst);
    let report = assertion_of(&upstream, &[&rotated]).await;
    if report["valid"] != true {
        assert_eq!(report["error"], "unknown kid", "{report}");
        assert_eq!(jwks.fetches.load(Ordering::SeqCst), fetches_before);
        tokio::time::sleep(jwks::REFETCH_INTERVAL + Duration::from_millis(100)).await;
        let report = assertion_of(&upstream, &[&rotated]).await;
        assert_eq!(report["valid"], true, "{report}");
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), fetches_before + 1);
    // The old key still works, from the cache.
    let report = assertion_of(&upstream, &[&old.sign(&claims("any", 60))]).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), fetches_before + 1);
}

#[tokio::test]
async fn unreachable_jwks_and_unverified_mode() {
    let signer = Signer::new("k1");
    let token = signer.sign(&claims("app", 60));

    // A port that was free a moment ago: nothing answers there.
    let url = format!(
        "http://127.0.0.1:{}/.well-known/gatehouse/jwks.json",
        crate::free_port()
    );
    let upstream = Upstream::start(UpstreamOptions {
        jwks_url: Some(url),
        issuer: None,
        audience: None,
    });
    let report = assertion_of(&upstream, &[&token]).await;
    assert_eq!(report["valid"], false);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jwks unavailable: "), "{report}");

    let upstream = Upstream::start(UpstreamOptions::default());
    let report = assertion_of(&upstream, &[&token]).await;
    assert_eq!(report["present"], true);
    assert_eq!(report["valid"], false);
    assert_eq!(report["error"], "verification not configured");
    assert_eq!(report["kid"], "k1");
    assert_eq!(report["claims"]["email"], "alice@example.com");
}

#[test]
fn invalid_options_are_reported() {
    let options = UpstreamOptions {
        jwks_url: Some("https://127.0.0.1:1/jwks.json".into()),
        issuer: None,
        audience: None,
    };
    assert!(options.validate().is_err());
    assert!(UpstreamOptions::default().validate().is_ok());
}
