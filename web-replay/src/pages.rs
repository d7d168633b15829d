//! The web app's pages: the signed-in layout, over the escaped HTML of
//! [`web_front::html`].

use axum::http::StatusCode;
use axum::response::Response;

pub(crate) use web_front::html::{esc, html_response, message, page, url_decode, url_encode};

/// A page of a signed-in viewer: the navigation (sessions, live,
/// search, who is signed in, sign out), then `body`; `scripts` are
/// same-origin script paths (the CSP allows no other).
pub(crate) fn layout(
    viewer: &crate::access::Viewer,
    status: StatusCode,
    title: &str,
    body: &str,
    scripts: &[&str],
) -> Response {
    let mut head = String::from("<link rel=\"stylesheet\" href=\"/assets/app.css\">");
    for s in scripts {
        if s.ends_with(".css") {
            head += &format!("<link rel=\"stylesheet\" href=\"{}\">", esc(s));
        } else {
            head += &format!("<script src=\"{}\" defer></script>", esc(s));
        }
    }
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · Gatehouse</title>{head}</head>\n<body>\n\
         <nav><a href=\"/sessions\">Sessions</a> <a href=\"/live\">Live</a> \
         <form class=\"search\" method=\"get\" action=\"/search\">\
         <input name=\"q\" placeholder=\"Search what was on screen\" aria-label=\"Search\"></form> \
         <span id=\"whoami\">{who}</span> \
         <form method=\"post\" action=\"/auth/signout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form></nav>\n\
         <main>\n<h1>{title}</h1>\n{body}\n</main>\n</body></html>\n",
        title = esc(title),
        who = esc(viewer.label()),
        csrf = esc(&viewer.session.csrf),
    );
    html_response(status, html)
}
