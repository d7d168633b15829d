//! One `tracing` span per proxied request, and W3C trace context
//! (`traceparent`, `tracestate`) across the proxy (issue 16).
//!
//! The span is plain `tracing`; the binary decides whether spans become
//! OpenTelemetry traces. Only with this crate's `otel` feature does the
//! proxy read a `traceparent` the browser (or any client) sent, continue
//! its trace, and send its own span's context upstream, so the upstream's
//! spans join the same trace. Without the feature the headers pass through
//! untouched, as any other header.

use axum::http::HeaderMap;

/// The span of one request on a route's host. The route and the status
/// are recorded once known; the path is not (queries carry tokens).
pub(crate) fn request_span(method: &str) -> tracing::Span {
    tracing::info_span!(
        "http_request",
        method = %method,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// Continues the trace of an incoming `traceparent`, if any: the request's
/// span becomes a child of the client's.
#[cfg(feature = "otel")]
pub(crate) fn continue_incoming(span: &tracing::Span, headers: &HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    if !headers.contains_key("traceparent") {
        return;
    }
    let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let parent = propagator.extract(&Headers(headers));
    // A malformed `traceparent` yields an empty context, and the span stays
    // a root; that the subscriber has no OpenTelemetry layer is no error.
    let _ = span.set_parent(parent);
}

/// Without the feature the proxy starts no trace of its own.
#[cfg(not(feature = "otel"))]
pub(crate) fn continue_incoming(_span: &tracing::Span, _headers: &HeaderMap) {}

/// Puts the current span's context into the upstream request as
/// `traceparent` (and `tracestate`), replacing what the client sent: the
/// upstream's parent is the proxy's span, which itself continues the
/// client's trace.
#[cfg(feature = "otel")]
pub(crate) fn inject_upstream(headers: &mut HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let context = tracing::Span::current().context();
    let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    propagator.inject_context(&context, &mut HeadersMut(headers));
}

/// Without the feature, the headers are left as they are.
#[cfg(not(feature = "otel"))]
pub(crate) fn inject_upstream(_headers: &mut HeaderMap) {}

/// Request headers as the propagator reads them.
#[cfg(feature = "otel")]
struct Headers<'a>(&'a HeaderMap);

#[cfg(feature = "otel")]
impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Upstream request headers as the propagator writes them.
#[cfg(feature = "otel")]
struct HeadersMut<'a>(&'a mut HeaderMap);

#[cfg(feature = "otel")]
impl opentelemetry::propagation::Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only its own well-formed names and values;
        // anything else is dropped rather than sent malformed.
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(key.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
