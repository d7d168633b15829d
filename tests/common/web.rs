//! HTTP helpers of the web tests: `gatehouse web`, a cookie jar that
//! checks every cookie's attributes, and sign-in through the dev IdP.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use sshd_test::ChildGuard;

use super::bin;

/// A `gatehouse web` process and the URL it serves.
pub struct Web {
    pub child: ChildGuard,
    pub url: String,
}

pub fn start_web(config: &Path) -> Web {
    let mut cmd = Command::new(bin());
    cmd.args(["web", "--config"]).arg(config);
    cmd.env("GATEHOUSE_LOG", "info");
    let child = ChildGuard::spawn(cmd).expect("spawn gatehouse web");
    let line = child
        .wait_for_stdout_line(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("gatehouse web did not start: {e}"));
    let url = line
        .trim()
        .rsplit(" for ")
        .next()
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Web { child, url }
}

/// A browser's cookies, by name.
#[derive(Default, Clone)]
pub struct Jar(pub HashMap<String, String>);

impl Jar {
    pub fn take(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            // Only __Host- cookies, and each with its attributes.
            assert!(name.starts_with("__Host-"), "{text}");
            for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
                assert!(text.contains(attr), "{attr} missing: {text}");
            }
            if value.is_empty() || text.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get(c: &reqwest::Client, jar: &mut Jar, url: &str) -> reqwest::Response {
    let r = c
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.take(&r);
    r
}

/// One browser's cookies, a jar per host (route hosts and the web app).
#[derive(Default)]
pub struct Jars(pub HashMap<String, Jar>);

impl Jars {
    /// A page load: the host's cookies go out, the ones set come back.
    pub async fn get(&mut self, c: &reqwest::Client, url: &str) -> reqwest::Response {
        let host = reqwest::Url::parse(url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        let jar = self.0.entry(host).or_default();
        let r = c
            .get(url)
            .header("accept", "text/html,application/xhtml+xml")
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        jar.take(&r);
        r
    }

    /// The `cookie` header this browser sends to `host`.
    pub fn cookie(&self, host: &str) -> String {
        self.0.get(host).map(Jar::header).unwrap_or_default()
    }
}

/// Follows a browser from `url` on a route host through the sign-in at
/// the web app (and the IdP at `issuer`, as `login` with the dev IdP's
/// `NAME-pw` password, when the browser is not signed in there yet) back
/// to `url`; returns where it ended.
pub async fn sign_in_via_proxy(
    c: &reqwest::Client,
    b: &mut Jars,
    issuer: &str,
    url: &str,
    login: &str,
) -> String {
    let mut next = url.to_owned();
    for _ in 0..10 {
        let r = b.get(c, &next).await;
        if r.status() != StatusCode::SEE_OTHER && r.status() != StatusCode::FOUND {
            panic!("{next}: {} {}", r.status(), r.text().await.unwrap());
        }
        let to = location(&r);
        let to = if to.starts_with('/') {
            let u = reqwest::Url::parse(&next).unwrap();
            format!("{}{to}", u.origin().ascii_serialization())
        } else {
            to
        };
        if to.starts_with(issuer) {
            let password = format!("{}-pw", login.split('@').next().unwrap());
            next = browse(issuer, &to, login, &password).await;
            continue;
        }
        if to == url {
            return to;
        }
        next = to;
    }
    panic!("sign-in did not come back to {url}");
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Starts a sign-in returning to `return_to`; returns the IdP URL.
pub async fn begin(c: &reqwest::Client, jar: &mut Jar, web: &Web, return_to: &str) -> String {
    let r = get(
        c,
        jar,
        &format!("{}/auth/login?return_to={return_to}", web.url),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    location(&r)
}

pub async fn browse(issuer: &str, url: &str, login: &str, password: &str) -> String {
    let (issuer, url, login, password) = (
        issuer.to_owned(),
        url.to_owned(),
        login.to_owned(),
        password.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        sshd_test::idp::authorize(&issuer, &url, &login, &password, false)
    })
    .await
    .unwrap()
}

/// The hidden CSRF field of the sign-out form.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Signs `login` in through the IdP in a fresh jar.
pub async fn sign_in(
    c: &reqwest::Client,
    web: &Web,
    issuer: &str,
    login: &str,
    password: &str,
) -> Jar {
    let mut jar = Jar::default();
    let to_idp = begin(c, &mut jar, web, "/sessions").await;
    let back = browse(issuer, &to_idp, login, password).await;
    let r = get(c, &mut jar, &back).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{login} did not sign in");
    jar
}

/// `GET` as the jar's browser; the status and the body.
pub async fn fetch(c: &reqwest::Client, jar: &mut Jar, url: &str) -> (StatusCode, String) {
    let r = get(c, jar, url).await;
    let status = r.status();
    (status, r.text().await.unwrap())
}
