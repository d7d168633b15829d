//! OpenTelemetry traces (issue 16), end to end: a gateway built with the
//! `otel` feature exports its spans over OTLP/HTTP to a real receiver
//! (`sshd_test::otlp`, which decodes the protobuf), for a real `ssh`
//! session to a real sshd and for a request through the HTTP proxy, whose
//! upstream must see the proxy's span in `traceparent`.
#![cfg(feature = "otel")]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::web::{Jars, sign_in_via_proxy};
use common::{Gateway, LOGIN, World, bin};
use sshd_test::idp::DevIdp;
use sshd_test::otlp::{OtlpReceiver, ReceivedSpan};
use sshd_test::upstream::{Upstream, UpstreamOptions};

/// Starts `gatehouse serve` on `config`, exporting spans every 200 ms
/// rather than every 5 s so the test waits less.
fn start(config: &std::path::Path) -> Gateway {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"]).arg(config);
    cmd.env("OTEL_BSP_SCHEDULE_DELAY", "200");
    Gateway::start_command(cmd)
}

fn tracing_section(receiver: &OtlpReceiver) -> String {
    format!(
        "tracing:\n  otlp_endpoint: {}\n  service_name: gatehouse-test\n  sample_ratio: 1.0\n",
        receiver.url
    )
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    match named(spans, name).as_slice() {
        [span] => span,
        other => panic!("expected one {name} span, got {other:#?}"),
    }
}

#[test]
fn an_ssh_session_is_one_trace_from_connection_to_seal() {
    let receiver = OtlpReceiver::start();
    let w = World::new();
    let config = w.write_config(&[w.route("t", "")], &tracing_section(&receiver));
    let gw = start(&config);

    let (code, out, err) = w.ssh(&gw, &format!("{LOGIN}@t"), &["echo traced"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "traced");

    // The connection span ends last (after the seal), so once it is in,
    // everything is.
    let spans = receiver.wait_for(Duration::from_secs(20), |spans| {
        spans.iter().any(|s| s.name == "connection") && spans.iter().any(|s| s.name == "seal")
    });
    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());

    let connection = one(&spans, "connection");
    assert_eq!(connection.parent_span_id, "", "the connection is the root");
    assert_eq!(connection.service_name.as_deref(), Some("gatehouse-test"));
    assert_eq!(connection.attr("route"), Some("t"));
    assert_eq!(connection.attr("login"), Some(LOGIN));
    let session_id = connection.attr("id").expect("the session id");
    assert_eq!(session_id.len(), 32, "{connection:#?}");
    let trace = connection.trace_id.as_str();
    assert_eq!(trace.len(), 32);
    assert_ne!(trace, "0".repeat(32));

    // Every span of the session is in the connection's trace.
    for s in &spans {
        assert_eq!(s.trace_id, trace, "{s:#?} is outside the session's trace");
    }

    let accepted = named(&spans, "authenticate")
        .into_iter()
        .find(|s| s.attr("result") == Some("accept"))
        .unwrap_or_else(|| panic!("no accepted authenticate span: {spans:#?}"));
    assert_eq!(accepted.parent_span_id, connection.span_id);
    assert_eq!(accepted.attr("method"), Some("publickey"));

    let authorize = one(&spans, "authorize");
    assert_eq!(authorize.parent_span_id, accepted.span_id);
    assert_eq!(authorize.attr("result"), Some("allow"));

    let channel = one(&spans, "channel");
    assert_eq!(channel.parent_span_id, connection.span_id);
    assert_eq!(channel.attr("kind"), Some("session"));

    let connect = one(&spans, "connect_target");
    assert_eq!(connect.parent_span_id, channel.span_id);
    assert_eq!(connect.attr("route"), Some("t"));
    assert_eq!(connect.attr("result"), Some("ok"));

    let seal = one(&spans, "seal");
    assert_eq!(seal.parent_span_id, connection.span_id);

    // No span carries key material or tokens: only bounded attributes.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains("BEGIN") && !v.contains("ssh-ed25519"),
                "{}: {k}={v}",
                s.name
            );
        }
    }
}

/// The `traceparent` the upstream received, as (trace id, parent span id).
async fn upstream_traceparent(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.unwrap();
    let echo: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let values: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "traceparent")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    let [value] = values.as_slice() else {
        panic!("expected one traceparent upstream: {echo:#}");
    };
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_sends_its_span_upstream_in_traceparent() {
    let receiver = OtlpReceiver::start();
    let idp = DevIdp::start(0, &["--redirect-uri", "http://127.0.0.1/auth/callback"]);
    let upstream = Upstream::start(UpstreamOptions::default());
    let w = World::new();
    let port = sshd_test::free_port();
    let web_url = format!("http://127.0.0.1:{port}");
    let config = w.write_config(
        &[w.route("t", "")],
        &format!(
            "idp:\n  issuer: {}\n  client_id: gatehouse\n  scopes: [openid, email, profile, groups]\n\
             web:\n  listen: 127.0.0.1:{port}\n  public_url: {web_url}\n  plain_http: true\n\
             http_routes:\n  - from: app.localhost\n    name: app\n    to: {}\n    \
             policy: {{rules: [{{allow: everyone}}]}}\n{}",
            idp.issuer,
            upstream.url,
            tracing_section(&receiver),
        ),
    );
    let _gw = start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the web listener never came up");
        std::thread::sleep(Duration::from_millis(50));
    }

    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("app.localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let app = format!("http://app.localhost:{port}");
    let mut alice = Jars::default();
    sign_in_via_proxy(
        &c,
        &mut alice,
        &idp.issuer,
        &format!("{app}/"),
        "alice@example.com",
    )
    .await;
    let cookie = alice.0.get("app.localhost").unwrap().header();

    // A request that brings no trace: the proxy's span starts one, and the
    // upstream's parent is that span.
    let echo = c
        .get(format!("{app}/fresh"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let (trace, parent) = upstream_traceparent(echo).await;
    let spans = receiver.wait_for(Duration::from_secs(20), |spans| {
        spans
            .iter()
            .any(|s| s.name == "http_request" && s.span_id == parent)
    });
    let span = spans.iter().find(|s| s.span_id == parent).unwrap();
    assert_eq!(
        span.trace_id, trace,
        "upstream trace id is the proxy span's"
    );
    assert_eq!(span.parent_span_id, "", "a new trace: {span:#?}");
    assert_eq!(span.attr("route"), Some("app"));
    assert_eq!(span.attr("method"), Some("GET"));
    assert_eq!(span.attr("status"), Some("200"));

    // A request that brings a `traceparent`: the proxy's span continues the
    // caller's trace, and the upstream's parent is the proxy's span.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let echo = c
        .get(format!("{app}/continued"))
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    let (trace, parent) = upstream_traceparent(echo).await;
    assert_eq!(trace, client_trace);
    assert_ne!(
        parent, client_span,
        "the upstream's parent is the proxy span"
    );
    let spans = receiver.wait_for(Duration::from_secs(20), |spans| {
        spans
            .iter()
            .any(|s| s.name == "http_request" && s.span_id == parent)
    });
    let span = spans.iter().find(|s| s.span_id == parent).unwrap();
    assert_eq!(span.trace_id, client_trace);
    assert_eq!(span.parent_span_id, client_span);
    assert!(receiver.problems().is_empty(), "{:?}", receiver.problems());
}
