//! Static files: ours (`assets/app.js`, `assets/app.css`, in the
//! repository) and the player installed from npm by its lockfile and
//! embedded at build time (`build.rs`).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/player.rs"));

const APP_JS: &[u8] = include_bytes!("../assets/app.js");
const APP_CSS: &[u8] = include_bytes!("../assets/app.css");

/// `GET /assets/{name}`.
pub(crate) async fn get(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (Some(APP_JS), "text/javascript; charset=utf-8"),
        "app.css" => (Some(APP_CSS), "text/css; charset=utf-8"),
        "player.js" => (PLAYER_JS, "text/javascript; charset=utf-8"),
        "player.css" => (PLAYER_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    let Some(body) = body else {
        tracing::warn!(file = name, "the player is not installed in this build");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the player was not installed when this binary was built; run dev/install-deps and build again\n",
        )
            .into_response();
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Assets change only with the binary; a day is safe and saves reloads.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    response
}
