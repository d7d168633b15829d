//! A small OTLP/HTTP trace receiver for the `otel` feature's tests (issue
//! 16): `POST /v1/traces` with an `application/x-protobuf` body, decoded
//! as a real `ExportTraceServiceRequest` with the generated prost messages
//! of `opentelemetry-proto`, and kept as [`ReceivedSpan`]s to assert on.
//!
//! It speaks just enough HTTP/1.1 for an exporter: requests with a
//! `Content-Length` body, kept-alive connections, one thread per
//! connection. Anything else gets a 4xx and is remembered as a problem,
//! so a test can show what went wrong.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message as _;

/// Bodies larger than this are refused (an exporter's batch is far smaller).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One span as the receiver got it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The span's name.
    pub name: String,
    /// The trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The span id, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id, or empty for a root span.
    pub parent_span_id: String,
    /// The span's attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// The `service.name` of the resource it came with.
    pub service_name: Option<String>,
}

impl ReceivedSpan {
    /// An attribute's value, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Requests that were not a well-formed protobuf export.
    problems: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A running receiver on `127.0.0.1`; stopped and joined on drop.
pub struct OtlpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, the OTLP/HTTP base URL (spans go to
    /// `/v1/traces` below it).
    pub url: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts listening on `127.0.0.1:0`; returns once connections are
    /// accepted.
    pub fn start() -> OtlpReceiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("otlp: bind");
        let addr = listener.local_addr().expect("otlp: local_addr");
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&accept_shared);
                    std::thread::spawn(move || serve(stream, &shared));
                }
            })
            .expect("otlp: spawn");
        OtlpReceiver {
            addr,
            url: format!("http://{addr}"),
            shared,
            thread: Some(thread),
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Requests that were refused, and why.
    pub fn problems(&self) -> Vec<String> {
        self.shared
            .problems
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Waits until `done` holds for the spans received, and returns them;
    /// panics with what did arrive after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the spans awaited did not arrive in {timeout:?}; got {:#?}\nproblems: {:?}",
                    spans,
                    self.problems()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wakes the accept loop, which sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection's requests until it closes.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
        let Some(length) = length.filter(|l| *l <= MAX_BODY) else {
            problem(
                shared,
                format!("{}: no usable content-length", request_line.trim()),
            );
            let _ = respond(&mut writer, "411 Length Required");
            return;
        };
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "POST" || path != "/v1/traces" {
            problem(shared, format!("{method} {path}: not an OTLP trace export"));
            let _ = respond(&mut writer, "404 Not Found");
            continue;
        }
        if header("content-type") != Some("application/x-protobuf") {
            problem(
                shared,
                format!("content-type {:?}, not protobuf", header("content-type")),
            );
            let _ = respond(&mut writer, "415 Unsupported Media Type");
            continue;
        }
        match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(request) => {
                let spans = flatten(request);
                if let Ok(mut all) = shared.spans.lock() {
                    all.extend(spans);
                }
                // An empty ExportTraceServiceResponse: full success.
                if respond(&mut writer, "200 OK").is_err() {
                    return;
                }
            }
            Err(e) => {
                problem(shared, format!("cannot decode the export: {e}"));
                let _ = respond(&mut writer, "400 Bad Request");
            }
        }
    }
}

fn problem(shared: &Shared, what: String) {
    if let Ok(mut p) = shared.problems.lock() {
        p.push(what);
    }
}

fn respond(writer: &mut TcpStream, status: &str) -> std::io::Result<()> {
    write!(
        writer,
        "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
    )?;
    writer.flush()
}

/// The spans of an export, with their resource's service name.
fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(text)
        });
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                out.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map(text).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
