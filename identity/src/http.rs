//! The one HTTP client, shared by openidconnect (discovery, JWKS, device
//! authorization) and our own token requests.

use super::*;
use openidconnect::http;

/// An error and its sources, `: `-joined, because reqwest and
/// openidconnect keep the useful part (connection refused, which claim)
/// in the source chain. Bounded to [`MAX_ERROR_CHAIN`] characters with
/// control characters replaced: a parse error's message quotes what the
/// IdP sent.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    crate::device::idp_text(&text, MAX_ERROR_CHAIN)
}

/// The longest error chain kept in a message.
pub(crate) const MAX_ERROR_CHAIN: usize = 400;

/// The one HTTP client: reqwest on rustls with ring, no redirects, every
/// request bounded by `http_timeout`, bodies capped at [`MAX_BODY`].
/// openidconnect calls it through [`AsyncHttpClient`]; its errors are
/// already [`Error::IdpUnavailable`].
#[derive(Clone)]
pub(crate) struct HttpClient {
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: String,
}

impl HttpClient {
    /// Builds the client, installing ring as rustls's process-wide crypto
    /// provider first unless one is installed (reqwest is built with
    /// `rustls-no-provider`, so it would panic without one; installing
    /// ring keeps aws-lc out of the build).
    pub(crate) fn new(settings: &IdpSettings) -> Result<HttpClient, Error> {
        // Err means a provider is already installed, which is all we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.http_timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(settings.http_timeout)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::IdpUnavailable {
                issuer: settings.issuer.clone(),
                reason: format!("cannot build HTTP client: {}", error_chain(&e)),
            })?;
        Ok(HttpClient {
            client,
            issuer: settings.issuer.clone(),
        })
    }

    /// Sends `request` and reads at most [`MAX_BODY`] of the answer. The
    /// error is the reason for an [`Error::IdpUnavailable`], naming the URL
    /// (an endpoint from discovery, so no credentials in it).
    pub(crate) async fn send(&self, request: reqwest::Request) -> Result<HttpResponse, String> {
        let url = request.url().clone();
        let failed = |e: reqwest::Error| format!("{url}: {}", error_chain(&e.without_url()));
        let mut response = self.client.execute(request).await.map_err(failed)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len().saturating_add(chunk.len()) > MAX_BODY {
                return Err(format!("{url}: response larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let mut builder = http::Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(response.headers().clone());
        }
        builder.body(body).map_err(|e| format!("{url}: {e}"))
    }
}

/// openidconnect's view of [`HttpClient`]: failures are already
/// [`Error::IdpUnavailable`], so discovery and device authorization pass
/// them through unchanged.
impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request =
                reqwest::Request::try_from(request).map_err(|e| Error::IdpUnavailable {
                    issuer: self.issuer.clone(),
                    reason: format!("bad request: {}", error_chain(&e)),
                })?;
            self.send(request)
                .await
                .map_err(|reason| Error::IdpUnavailable {
                    issuer: self.issuer.clone(),
                    reason,
                })
        })
    }
}
