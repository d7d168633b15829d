//! Tests of loading and validation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::validate::split_host_port;
use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu0ixU5Zn1h2cCa5w9K8dXbK8VVZy6FTvJ/6Zp7pXiO";

/// A fresh unencrypted ed25519 key file, as `gatehouse ca init` writes.
fn write_test_key(path: &std::path::Path) {
    let seed: [u8; 32] = rand::RngExt::random(&mut rand::rng());
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed));
    let pem = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
}

fn with_ca(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_test_key(&dir.path().join("ca"));
    // Appended, so the positions in the tests are those of `yaml`.
    let text = format!("{yaml}user_ca: ca\nstate_dir: state\n");
    (dir, text)
}

fn errors(yaml: &str) -> Vec<String> {
    let (dir, text) = with_ca(yaml);
    let path = dir.path().join("gatehouse.yaml");
    match parse(&path, &text) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
                .collect()
        }
    }
}

#[test]
fn a_good_config_loads() {
    let (dir, text) = with_ca(&format!(
        r#"listen: 127.0.0.1:0
identities:
  - name: ci
    email: ci@example.com
    groups: [deploy]
    keys: ["{KEY} ci"]
routes:
  - name: prod-db
    target: db.internal:22
    logins: [postgres]
    host_key: "{KEY}"
    policy:
      capabilities: {{agent: true}}
      obligations: {{cert_ttl: 2m}}
      rules:
        - allow: deployers
          when: {{groups: deploy}}
    source_address: [10.0.0.0/8, 192.0.2.1]
"#
    ));
    let c = parse(&dir.path().join("g.yaml"), &text).expect("valid");
    let r = &c.routes["prod-db"];
    assert_eq!(r.target_host, "db.internal");
    assert_eq!(r.target_port, 22);
    assert_eq!(r.policy.obligations().cert_ttl, Duration::from_secs(120));
    assert!(r.policy.capabilities().agent && r.policy.capabilities().pty);
    assert!(!r.policy.capabilities().port_forward_local.is_allowed());
    assert_eq!(c.reevaluate_interval, DEFAULT_REEVALUATE_INTERVAL);
    assert_eq!(r.source_address.as_deref(), Some("10.0.0.0/8,192.0.2.1"));
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.state_dir, dir.path().join("state"));
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let got = errors(&format!(
        r#"routes:
  - name: a
    target: nowhere
    logins: [root]
    host_key: "{KEY}"
    policy: {{obligations: {{cert_ttl: 5 parsecs}}, rules: []}}
  - name: a2
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: on-call
  - name: b
    target: h:22
    logins: [root]
    policy: {{rules: [{{allow: x, when: {{source_ip: 10.0.0.300/8}}}}]}}
  - name: c
    target: h:22
    host_key: "{KEY}"
"#
    ));
    let want_prefixes = [
        "3:13: bad target \"nowhere\"",
        "6:38: `cert_ttl`: `5 parsecs` is not a duration",
        "11:13: unknown policy `on-call`",
        "12:11: route \"b\" has no host key check",
        "15:51: `10.0.0.300/8` is not a CIDR",
        "16:11: route \"c\" has no policy",
    ];
    for w in want_prefixes {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in {got:#?}"
        );
    }
}

#[test]
fn duplicate_routes_and_keys_are_errors() {
    let got = errors(&format!(
        r#"identities:
  - name: one
    keys: ["{KEY}"]
  - name: two
    keys: ["{KEY}"]
routes:
  - name: r
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: {{rules: [{{allow: one, when: {{email: one@example.com}}}}]}}
  - name: r
    target: h:22
    logins: [root]
    host_key: "{KEY}"
    policy: {{rules: [{{allow: one, when: {{email: one@example.com}}}}]}}
"#
    ));
    assert!(
        got.iter().any(|g| g.starts_with("5:12: key SHA256:")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("12:11: duplicate route \"r\"")),
        "{got:#?}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_position() {
    let got = errors("listen: 127.0.0.1:2222\nlisten_adress: 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("2:1: unknown field"), "{got:#?}");
}

#[test]
fn unreadable_key_files_are_errors() {
    let got = errors(
        "routes:\n  - name: r\n    target: h:22\n    logins: [root]\n    host_key: /nonexistent/key.pub\n    policy: {rules: []}\n",
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("5:15: cannot read host_key /nonexistent/key.pub")),
        "{got:#?}"
    );
}

#[test]
fn the_idp_section_loads_with_defaults_and_a_secret_file() {
    let (dir, text) = with_ca(
        "idp:\n  issuer: https://idp.example.com\n  client_id: gatehouse\n  client_secret_file: secret\n  scopes: [openid, email, groups]\n  allowed_domains: ['@Example.com']\n  poll_interval: 2s\nlogin_ttl: 8h\nlimits:\n  max_sign_ins_per_source: 2\n",
    );
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
    let sign_in = c.sign_in.unwrap();
    assert_eq!(sign_in.idp.issuer, "https://idp.example.com");
    assert_eq!(sign_in.idp.client_secret.as_deref(), Some("s3cret"));
    assert_eq!(sign_in.idp.scopes, ["openid", "email", "groups"]);
    assert_eq!(sign_in.idp.groups_claim, "groups");
    assert_eq!(sign_in.idp.allowed_domains, ["example.com"]);
    assert_eq!(sign_in.idp.poll_interval, Some(Duration::from_secs(2)));
    assert_eq!(sign_in.login_ttl, Duration::from_secs(8 * 3600));
    assert_eq!(c.limits.max_sign_ins_per_source, 2);
    assert_eq!(c.limits.max_sign_ins, 256);
    // The secret never shows in debug output.
    assert!(!format!("{sign_in:?}").contains("s3cret"));
}

#[test]
fn idp_problems_are_reported_with_positions() {
    let got = errors(
        "idp:\n  client_id: ''\n  client_secret_file: /nonexistent/secret\n  scopes: ['two words']\n  allowed_domains: [a@b]\n",
    );
    let expect = [
        "2:3: idp.issuer is required",
        "2:14: idp.client_id must not be empty",
        "3:23: cannot read client secret file /nonexistent/secret",
        "4:12: bad scope",
        "5:21: bad email domain",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    let got = errors("login_ttl: 1h\n");
    assert!(
        got.iter()
            .any(|g| g.starts_with("1:12: login_ttl needs an idp section")),
        "{got:#?}"
    );
}

#[test]
fn recording_defaults_to_files_in_the_state_dir_and_takes_s3() {
    let (dir, text) = with_ca("");
    let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
    assert_eq!(
        c.recording.recorder.storage,
        recorder::StorageConfig::File(dir.path().join("state/recordings"))
    );
    assert_eq!(
        c.recording.recorder.spool_dir,
        dir.path().join("state/spool")
    );
    let (dir, text) = with_ca(
        "recording:\n  storage: s3://rec/gh\n  s3_endpoint: http://127.0.0.1:9000\n  segment_interval: 2s\n",
    );
    let c = parse(&dir.path().join("gatehouse.yaml"), &text).unwrap();
    let recorder::StorageConfig::S3(s3) = &c.recording.recorder.storage else {
        panic!("not s3: {:?}", c.recording.recorder.storage);
    };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("rec", "gh"));
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(s3.allow_http);
    assert_eq!(
        c.recording.recorder.segment_interval,
        Duration::from_secs(2)
    );
}

#[test]
fn recording_problems_are_reported_with_positions() {
    let got = errors(
        "recording:\n  storage: ftp://x\n  s3_region: eu\n  segment_bytes: 10\nroutes:\n  - name: r\n    target: h:22\n    logins: [root]\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGu0ixU5Zn1h2cCa5w9K8dXbK8VVZy6FTvJ/6Zp7pXiO\"\n    policy: {rules: []}\n",
    );
    let expect = [
        "2:12: ",
        "3:14: s3_* settings need an s3://bucket/prefix storage",
        "4:18: segment_bytes must be at least 4096",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
}

#[test]
fn host_port_forms() {
    assert_eq!(split_host_port("h:22"), Some(("h".into(), 22)));
    assert_eq!(split_host_port("[::1]:2200"), Some(("::1".into(), 2200)));
    assert_eq!(split_host_port("::1:22"), None);
    assert_eq!(split_host_port("h"), None);
    assert_eq!(split_host_port("h:0"), None);
    assert_eq!(split_host_port(":22"), None);
}

#[test]
fn pre_login_limits_are_checked_with_positions() {
    let got = errors(
        "limits:\n  source_netblock_v4: 33\n  max_preauth_bytes: 100\n  handshake_timeout: soon\n  penalties:\n    exempt: [10.0.0.0/8, not-an-address]\n    min: 10m\n    max: 1m\n",
    );
    assert_eq!(
        got,
        vec![
            "2:23: a prefix length must be between 1 and 32".to_owned(),
            "3:22: max_preauth_bytes must be at least 16384: a key exchange and a few keys need that much".to_owned(),
            "4:22: bad duration \"soon\": expected number at 0 (write e.g. 30s, 5m, 1h)".to_owned(),
            "6:26: bad address \"not-an-address\" in penalties.exempt: write 10.0.0.0/8 or 192.0.2.7".to_owned(),
            "8:10: penalties: max must not be shorter than min".to_owned(),
        ]
    );
}

const IDP: &str = "idp:\n  issuer: https://idp.example.com\n  client_id: gatehouse\n";

#[test]
fn a_web_section_is_read_with_its_defaults() {
    let (dir, text) = with_ca(&format!(
        "{IDP}web:\n  listen: 127.0.0.1:8443\n  public_url: http://127.0.0.1:8443/\n  plain_http: true\n  trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n"
    ));
    let web = parse(&dir.path().join("g.yaml"), &text)
        .unwrap()
        .web
        .unwrap();
    assert_eq!(web.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(web.public_url, "http://127.0.0.1:8443");
    assert_eq!(web.transport, WebTransport::PlainHttp);
    assert_eq!(web.trusted_proxies.len(), 2);
    assert_eq!(web.session_idle, Duration::from_secs(1800));
    assert_eq!(web.session_lifetime, Duration::from_secs(12 * 3600));

    std::fs::write(dir.path().join("web.crt"), "pem").unwrap();
    std::fs::write(dir.path().join("web.key"), "pem").unwrap();
    let text = text.replace(
        "  plain_http: true\n",
        "  tls: {cert: web.crt, key: web.key}\n  session_idle: 10m\n  session_lifetime: 1h\n",
    );
    let web = parse(&dir.path().join("g.yaml"), &text)
        .unwrap()
        .web
        .unwrap();
    assert_eq!(
        web.transport,
        WebTransport::Tls {
            cert: dir.path().join("web.crt"),
            key: dir.path().join("web.key")
        }
    );
    assert_eq!(web.session_idle, Duration::from_secs(600));
}

#[test]
fn web_problems_are_reported_with_positions() {
    let got = errors("web:\n  listen: nowhere\n  public_url: ftp://x\n");
    let expect = [
        "2:3: web needs an idp section",
        "2:11: bad web.listen address",
        "3:15: web.public_url \"ftp://x\" must be an http(s) URL",
        "2:3: web needs tls: {cert, key}, or plain_http: true",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    let got = errors(&format!(
        "{IDP}web:\n  listen: 0.0.0.0:80\n  public_url: http://gatehouse.example.com\n  plain_http: true\n  trusted_proxies: [not-an-ip]\n  session_idle: 2h\n  session_lifetime: 1h\n"
    ));
    let expect = [
        "6:15: web.public_url must be https:// unless it is loopback",
        "8:21: bad trusted proxy",
        "10:21: web.session_idle must not be longer",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    let got = errors(&format!(
        "{IDP}web:\n  listen: 0.0.0.0:80\n  public_url: https://g.example\n  plain_http: true\n  tls: {{cert: /nonexistent.crt}}\n"
    ));
    let expect = ["8:8: web.tls and web.plain_http: true exclude each other"];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
}

#[test]
fn web_access_compiles_and_defaults_to_no_rules() {
    let web =
        "web:\n  listen: 127.0.0.1:8443\n  public_url: http://127.0.0.1:8443\n  plain_http: true\n";
    let (dir, text) = with_ca(&format!("{IDP}{web}"));
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    assert_eq!(config.web.unwrap().access.rule_count(), 0);

    let (dir, text) = with_ca(&format!(
        "{IDP}{web}  access:
    rules:
      - allow: own-sessions
        when: {{ own: true }}
        capabilities: [list, play]
      - deny: no-prod-db-for-contractors
        when: {{ all: [ {{ groups: contractors }}, {{ route: prod-db }} ] }}
"
    ));
    let access = parse(&dir.path().join("g.yaml"), &text)
        .unwrap()
        .web
        .unwrap()
        .access;
    assert_eq!(access.rule_count(), 2);
    let mut viewer = Identity::new(policy::lang::IdentityKind::User, "sub");
    viewer.email = Some("alice@example.com".into());
    let d = policy::lang::evaluate_access(
        &access,
        &policy::lang::AccessRequest {
            viewer: &viewer,
            source: "10.0.0.1".parse().unwrap(),
            now: "2026-03-30T08:00:00Z".parse().unwrap(),
            recording: policy::lang::RecordingFacts {
                route: "staging",
                login: "deploy",
                recorded_user: "Alice@Example.com",
            },
        },
    );
    assert!(d.allows(policy::lang::ViewerCapability::Play));
    assert!(!d.allows(policy::lang::ViewerCapability::Download));
}

#[test]
fn web_access_problems_have_file_line_and_column_with_the_others() {
    let (dir, text) = with_ca(&format!(
        r#"{IDP}web:
  listen: nowhere
  public_url: http://127.0.0.1:8443
  plain_http: true
  access:
    rules:
      - allow: own
        when: {{ own: yes please }}
        capabilities: [list, replay]
      - allow: audit
        when: {{ login_matches: email_local_part }}
        capabilities: all
routes:
  - name: r
    target: h:22
    host_key: "{KEY}"
    policy: {{rules: [{{allow: a, when: {{recorded_user: x}}}}]}}
"#
    ));
    let path = dir.path().join("gatehouse.yaml");
    let problems = parse(&path, &text).unwrap_err();
    let got: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
    let file = path.display();
    let expect = [
        format!("{file}:5:11: bad web.listen address"),
        format!("{file}:11:22: `own` takes true or false, found a string"),
        format!("{file}:12:30: unknown capability `replay`"),
        format!("{file}:14:17: `login_matches` compares a requested login"),
        format!("{file}:20:40: `recorded_user` is about a recorded session"),
    ];
    for e in &expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    assert_eq!(got.len(), expect.len(), "{got:#?}");
}

const WEB: &str =
    "web:\n  listen: 127.0.0.1:8443\n  public_url: http://127.0.0.1:8443\n  plain_http: true\n";

#[test]
fn http_routes_load_with_the_web_listener_origin_and_most_specific_first() {
    let (dir, text) = with_ca(&format!(
        r#"{IDP}{WEB}http:
  assertion_ttl: 2m
http_routes:
  - from: tools.localhost
    to: http://127.0.0.1:3000/base/
    policy: {{rules: [{{allow: everyone}}]}}
  - from: tools.localhost/grafana
    name: grafana
    to: [http://127.0.0.1:3001, "https://[::1]:3002"]
    identity_headers: false
    policy:
      rules:
        - allow: sre
          when: {{groups: sre}}
  - from: https://h2.example.com:9443
    to: http://127.0.0.1:3003
    h2c: true
    preserve_host: true
    policy: {{rules: [{{allow: everyone}}]}}
"#
    ));
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    let http = config.http.unwrap();
    assert_eq!(http.assertion_ttl, Duration::from_secs(120));
    assert_eq!(http.idle_timeout, Duration::from_secs(300));
    assert_eq!(
        http.signing_key,
        dir.path().join("state").join("http_signing_keys.pem")
    );
    let names: Vec<_> = http.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["h2.example.com", "grafana", "tools.localhost"]);
    let grafana = &http.routes[1];
    assert_eq!(grafana.host, "tools.localhost");
    assert_eq!(grafana.path_prefix, "/grafana");
    assert_eq!(grafana.origin, "http://tools.localhost:8443");
    assert!(!grafana.identity_headers);
    assert_eq!(grafana.policy.rule_count(), 1);
    assert_eq!(
        grafana.upstreams[1],
        Upstream {
            tls: true,
            authority: "[::1]:3002".into(),
            host: "::1".into(),
            base_path: String::new(),
        }
    );
    let tools = &http.routes[2];
    assert_eq!(tools.path_prefix, "/");
    assert_eq!(tools.upstreams[0].base_path, "/base");
    assert!(tools.identity_headers && !tools.h2c && !tools.preserve_host);
    let h2 = &http.routes[0];
    assert_eq!(h2.origin, "https://h2.example.com:9443");
    assert!(h2.h2c && h2.preserve_host);
    assert_eq!(
        config.sign_in.unwrap().ssh_sign_in,
        SshSignIn::Auto,
        "device when the IdP offers it, else the link"
    );
}

#[test]
fn http_route_problems_have_positions() {
    let got = errors(&format!(
        r#"{IDP}{WEB}http_routes:
  - from: "bad host/x?y"
    to: ftp://x
    policy: {{rules: [{{allow: a, when: {{login: root}}}}]}}
  - from: 127.0.0.1
    to: [https://u.example]
    h2c: true
  - from: app.localhost
    to: http://a
    policy: {{rules: [{{allow: a}}]}}
  - from: app.localhost
    to: http://b
    policy: {{rules: [{{allow: a}}]}}
"#
    ));
    let expect = [
        "9:11: bad from",
        "10:9: bad upstream \"ftp://x\"",
        "11:40: `login` is the login on an SSH target",
        "12:5: http route \"127.0.0.1\" has no policy",
        "12:11: from \"127.0.0.1\" is the web app's own host",
        "14:10: h2c is HTTP/2 without TLS",
        "18:11: another http route already serves app.localhost/",
        "18:5: http route \"app.localhost\" is named twice",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    let got = errors(
        "http_routes:\n  - from: a.example\n    to: http://x\n    policy: {rules: [{allow: a}]}\n",
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("2:5: http_routes need a web section")),
        "{got:#?}"
    );
    let got = errors(&format!("{IDP}  ssh_sign_in: links\n"));
    assert!(
        got.iter().any(|g| g.contains("must be device or link")),
        "{got:#?}"
    );
    let got = errors(&format!("{IDP}  ssh_sign_in: link\n"));
    assert!(
        got.iter()
            .any(|g| g.contains("ssh_sign_in: link needs a web section")),
        "{got:#?}"
    );
}

#[test]
fn the_edge_section_inherits_trusted_proxies_and_checks_its_values() {
    let (dir, text) = with_ca(
        "trusted_proxies: [10.0.0.0/8]\nedge:\n  listen: 0.0.0.0:443\n  silent_client: 2s\n",
    );
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    let edge = config.edge.unwrap();
    assert_eq!(edge.listen, "0.0.0.0:443".parse().unwrap());
    assert_eq!(edge.trusted_proxies, config.trusted_proxies);
    assert_eq!(edge.trusted_proxies, vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(edge.silent_client, Duration::from_secs(2));
    assert!(edge.tls.is_none());

    let got = errors(
        "trusted_proxies: [nope]\nedge:\n  listen: everywhere\n  trusted_proxies: [300.1.1.1]\n  silent_client: 1m\n  tls: {cert: missing.crt}\n",
    );
    let expect = [
        "1:19: bad trusted proxy",
        "3:11: bad edge.listen address",
        "4:21: bad trusted proxy",
        "5:18: edge.silent_client must be between 100ms and 30s",
        "6:15: cannot read",
        "6:8: edge.tls.key is required",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    // The web listener's HTTPS on the edge needs the edge's certificate.
    let got = errors(&format!(
        "{IDP}web:\n  listen: 127.0.0.1:8080\n  public_url: http://127.0.0.1:8080\n  plain_http: true\nedge:\n  listen: 0.0.0.0:443\n"
    ));
    assert!(
        got.iter().any(|g| g.starts_with("9:3: edge needs tls")),
        "{got:#?}"
    );
}

#[test]
fn direct_access_compiles_against_the_routes_with_positions() {
    let routes = format!(
        "routes:\n  - name: db\n    target: h:22\n    logins: [postgres]\n    host_key: \"{KEY}\"\n    policy: {{rules: [{{allow: a, when: {{all: []}}}}]}}\n"
    );
    // Without the section nobody gets a certificate.
    let (dir, text) = with_ca(&routes);
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    assert_eq!(config.direct_access.rule_count(), 0);

    let good = format!(
        "{routes}direct_access:\n  max_ttl: 2h\n  rules:\n    - allow: dba\n      when: {{groups: dba}}\n      routes: db\n      logins: postgres\n"
    );
    let (dir, text) = with_ca(&good);
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    assert_eq!(config.direct_access.rule_count(), 1);
    assert_eq!(
        config.direct_access.max_ttl(),
        std::time::Duration::from_secs(7200)
    );

    let bad = format!(
        "{routes}direct_access:\n  rules:\n    - allow: dba\n      when: {{groups: dba}}\n      routes: [db, nowhere]\n      logins: root\n      ttl: 9h\n"
    );
    let (dir, text) = with_ca(&bad);
    let path = dir.path().join("g.yaml");
    let problems = parse(&path, &text).unwrap_err();
    let got: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
    let file = path.display();
    let expect = [
        format!("{file}:11:20: unknown route `nowhere`; routes are: db"),
        format!("{file}:12:15: route `db` does not offer login `root`"),
        format!("{file}:13:12: `ttl` is at most 8h"),
    ];
    for e in &expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    assert_eq!(got.len(), expect.len(), "{got:#?}");
}

#[test]
fn the_metrics_section_needs_an_address() {
    let (dir, text) = with_ca("metrics:\n  listen: 127.0.0.1:9100\n");
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    assert_eq!(
        config.metrics.unwrap().listen,
        "127.0.0.1:9100".parse().unwrap()
    );
    let (dir, text) = with_ca("");
    assert!(
        parse(&dir.path().join("g.yaml"), &text)
            .unwrap()
            .metrics
            .is_none()
    );

    let got = errors("metrics:\n  listen: localhost\n");
    assert!(
        got.iter()
            .any(|g| g.starts_with("2:11: bad metrics.listen address")),
        "{got:#?}"
    );
    let got = errors("metrics: {}\n");
    assert!(
        got.iter()
            .any(|g| g.starts_with("1:10: metrics.listen is required")),
        "{got:#?}"
    );
    let got = errors("metrics:\n  listen: 127.0.0.1:9100\n  path: /m\n");
    assert!(got.iter().any(|g| g.contains("path")), "{got:#?}");
}

#[test]
fn the_tracing_section_has_defaults_and_checks_its_values() {
    // Issue 16.
    let (dir, text) = with_ca("tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n");
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    let tracing = config.tracing.unwrap();
    assert_eq!(tracing.traces_url(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(tracing.service_name, "gatehouse");
    assert_eq!(tracing.sample_ratio, 1.0);
    let (dir, text) = with_ca(
        "tracing: {otlp_endpoint: \"https://otel.example/v1/traces\", service_name: gw-1, sample_ratio: 0.25}\n",
    );
    let config = parse(&dir.path().join("g.yaml"), &text).unwrap();
    let tracing = config.tracing.unwrap();
    assert_eq!(tracing.traces_url(), "https://otel.example/v1/traces");
    assert_eq!(tracing.service_name, "gw-1");
    assert_eq!(tracing.sample_ratio, 0.25);

    let got = errors(
        "tracing:\n  otlp_endpoint: 127.0.0.1:4318\n  sample_ratio: 1.5\n  service_name: \"\"\n",
    );
    let expect = [
        "2:18: bad tracing.otlp_endpoint",
        "3:17: tracing.sample_ratio must be between 0.0 and 1.0",
        "4:17: tracing.service_name must be",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e}: {got:#?}");
    }
    let got = errors("tracing:\n  service_name: gw\n");
    assert!(
        got.iter()
            .any(|g| g.contains("tracing.otlp_endpoint is required")),
        "{got:#?}"
    );
    let got = errors("tracing:\n  otlp_endpoint: http://x:4318\n  headers: {a: b}\n");
    assert!(got.iter().any(|g| g.contains("headers")), "{got:#?}");
}
