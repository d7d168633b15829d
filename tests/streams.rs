//! Channels without a terminal (issue 15): recorded as byte streams that
//! give back exactly what went through, with file events for rsync and
//! git; plain lines on them; the spool cap; and sessions that end while
//! storage is down. Real `ssh`, `tar`, `rsync`, `git`, `sshd` and the real
//! `gatehouse` binary.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::recording::{file_catalog, runtime, s3_section};
use common::{Gateway, LOGIN, World, bin, run};
use recorder::asciicast::Event;
use recorder::{Catalog, FileOpKind, SessionFilter, SessionRecord, Status};
use sshd_test::require_program;
use sshd_test::s3::S3Server;

/// The finished recordings on `route`, waiting until there are `n`.
fn finished(catalog: &Catalog, route: &str, n: usize) -> Vec<SessionRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let filter = SessionFilter {
            route: Some(route.to_owned()),
            ..SessionFilter::default()
        };
        let list: Vec<_> = runtime()
            .block_on(catalog.list(&filter))
            .unwrap()
            .into_iter()
            .filter(|r| !matches!(r.status, Status::Recording | Status::Uploading))
            .collect();
        if list.len() >= n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} recordings finished on {route}",
            list.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sha256_file(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `gatehouse recordings export ID --stream NAME -o FILE`.
fn export_stream(config: &std::path::Path, id: &str, stream: &str, to: &std::path::Path) {
    let mut cmd = Command::new(bin());
    cmd.args(["recordings", "export", "--config"])
        .arg(config)
        .args([id, "--stream", stream, "-o"])
        .arg(to);
    let (code, out, err) = run(cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}{err}");
}

/// The shell line that runs ssh through the gateway as `user`.
fn ssh_line(w: &World, gw: &Gateway, user: &str) -> String {
    format!(
        "{} {} {user}@127.0.0.1",
        require_program("ssh").display(),
        w.ssh_args(&w.client_key, gw.port).join(" ")
    )
}

#[test]
fn a_tar_and_random_bytes_export_byte_for_byte_and_a_pty_stays_a_terminal() {
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let user = format!("{LOGIN}@t");
    // A tar of a directory with a binary file, piped through the gateway.
    let src = w.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 3000000 /dev/urandom > {0}/blob && seq 1 20000 > {0}/numbers && chmod -R a+rX {0}",
            src.display()
        ))
        .status()
        .unwrap();
    let copy = w.path("copy.tar");
    let script = format!(
        "{} 'tar cf - -C {} .' > {} 2>{}",
        ssh_line(&w, &gw, &user),
        src.display(),
        copy.display(),
        w.path("tar.err").display()
    );
    let (code, _, err) = w.sh(&gw, &script, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let listed = Command::new("tar").arg("tf").arg(&copy).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("blob"));

    let catalog = file_catalog(&w);
    let rec = finished(&catalog, "t", 1).remove(0);
    assert_eq!(rec.status, Status::Sealed, "{rec:?}");
    let exported = w.path("exported.tar");
    export_stream(
        &w.path("gatehouse.yaml"),
        &rec.info.session_id,
        "stdout",
        &exported,
    );
    assert_eq!(
        sha256_file(&exported),
        sha256_file(&copy),
        "the recording gives back exactly what went through"
    );
    // The sealed object is the stream format, and it verifies.
    let meta = runtime()
        .block_on(catalog.meta(&rec.info.session_id))
        .unwrap();
    assert!(meta.meta.channels[0].sealed_key.ends_with(".stream.zst"));
    let report = runtime()
        .block_on(catalog.verify(&rec.info.session_id, None))
        .unwrap();
    assert!(report.ok, "{report:?}");

    // Random bytes and stderr, each its own stream.
    let out = w.path("random.bin");
    let script = format!(
        "{} 'head -c 2000000 /dev/urandom; echo to-stderr >&2' > {} 2>{}",
        ssh_line(&w, &gw, &user),
        out.display(),
        w.path("random.err").display()
    );
    let (code, _, err) = w.sh(&gw, &script, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let rec = finished(&catalog, "t", 2)
        .into_iter()
        .find(|r| r.info.session_id != rec.info.session_id)
        .unwrap();
    let exported = w.path("random.exported");
    export_stream(
        &w.path("gatehouse.yaml"),
        &rec.info.session_id,
        "stdout",
        &exported,
    );
    assert_eq!(sha256_file(&exported), sha256_file(&out));
    let stderr = w.path("random.stderr");
    export_stream(
        &w.path("gatehouse.yaml"),
        &rec.info.session_id,
        "stderr",
        &stderr,
    );
    assert_eq!(std::fs::read_to_string(&stderr).unwrap(), "to-stderr\n");
    // Exported as asciicast, the same recording plays as text.
    let mut cmd = Command::new(bin());
    cmd.args(["recordings", "export", "--config"])
        .arg(w.path("gatehouse.yaml"))
        .arg(&rec.info.session_id);
    let (code, cast, err) = run(cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(
        cast.starts_with("{\"version\":3"),
        "{}",
        &cast[..80.min(cast.len())]
    );
    assert!(cast.contains("to-stderr"));

    // With a pty the channel is a terminal recording, as before.
    let (code, _, err) = w.ssh(&gw, &user, &["-tt", "echo on-a-terminal"]);
    assert_eq!(code, 0, "{err}");
    let rec = finished(&catalog, "t", 3)
        .into_iter()
        .max_by_key(|r| r.started_at_ms)
        .unwrap();
    let meta = runtime()
        .block_on(catalog.meta(&rec.info.session_id))
        .unwrap();
    assert!(meta.meta.channels[0].sealed_key.ends_with(".cast.zst"));
}

#[test]
fn rsync_and_git_through_the_gateway_are_recorded_with_their_file_events() {
    let rsync = require_program("rsync");
    let git = require_program("git");
    let w = World::new();
    let gw = w.start(&[w.route("t", "")]);
    let ssh = format!(
        "{} {} -l {LOGIN}@t",
        require_program("ssh").display(),
        w.ssh_args(&w.client_key, gw.port).join(" ")
    );
    // rsync up to the target.
    let src = w.path("up");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n".repeat(1000)).unwrap();
    std::fs::write(src.join("b.bin"), vec![7u8; 100_000]).unwrap();
    let dest = w.path("rsync-dest");
    std::fs::create_dir_all(&dest).unwrap();
    Command::new("chown")
        .args([LOGIN, dest.to_str().unwrap()])
        .status()
        .unwrap();
    let mut cmd = Command::new(&rsync);
    cmd.args(["-a", "-e", &ssh])
        .arg(format!("{}/", src.display()))
        .arg(format!("127.0.0.1:{}/", dest.display()));
    let (code, out, err) = run(cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(dest.join("b.bin")).unwrap(),
        vec![7u8; 100_000]
    );

    // git clone from a bare repository on the target.
    let repo = w.path("repo.git");
    let work = w.path("work");
    let sh = |script: &str| {
        let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
        assert!(st.success(), "{script}");
    };
    sh(&format!(
        "{git} init -q --bare {r} && {git} init -q {wk} && cd {wk} && \
         echo hello > f && {git} add f && \
         {git} -c user.email=t@example.com -c user.name=t commit -qm one && \
         {git} push -q {r} HEAD:refs/heads/main && chown -R {LOGIN} {r}",
        git = git.display(),
        r = repo.display(),
        wk = work.display()
    ));
    let clone = w.path("clone");
    let mut cmd = Command::new(&git);
    cmd.env("GIT_SSH_COMMAND", &ssh)
        .args(["clone", "-q", "-b", "main"])
        .arg(format!("127.0.0.1:{}", repo.display()))
        .arg(&clone);
    let (code, out, err) = run(cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(clone.join("f")).unwrap(), "hello\n");

    let catalog = file_catalog(&w);
    let recs = finished(&catalog, "t", 2);
    let file_ops: Vec<_> = recs
        .iter()
        .flat_map(|r| {
            let cast = runtime()
                .block_on(catalog.cast(&r.info.session_id, None))
                .unwrap();
            cast.events.into_iter().filter_map(|e| match e.event {
                Event::FileOp(op) => Some(op),
                _ => None,
            })
        })
        .collect();
    let rsync_op = file_ops
        .iter()
        .find(|op| op.protocol == "rsync")
        .unwrap_or_else(|| panic!("no rsync event in {file_ops:?}"));
    assert_eq!(rsync_op.op, FileOpKind::Upload);
    assert_eq!(rsync_op.path, format!("{}/", dest.display()));
    assert!(rsync_op.bytes_written > 100_000 / 50, "{rsync_op:?}");
    assert_eq!(rsync_op.status, "ok");
    let git_op = file_ops
        .iter()
        .find(|op| op.protocol == "git")
        .unwrap_or_else(|| panic!("no git event in {file_ops:?}"));
    assert_eq!(git_op.op, FileOpKind::Download);
    assert_eq!(git_op.path, repo.display().to_string());
    assert!(git_op.bytes_read > 0, "{git_op:?}");
    // The pack that came down is in the recording, byte for byte.
    let git_rec = recs
        .iter()
        .find(|r| {
            runtime()
                .block_on(catalog.meta(&r.info.session_id))
                .unwrap()
                .meta
                .channels[0]
                .command
                .as_deref()
                .is_some_and(|c| c.contains("git-upload-pack"))
        })
        .unwrap();
    let pack = w.path("pack.out");
    export_stream(
        &w.path("gatehouse.yaml"),
        &git_rec.info.session_id,
        "stdout",
        &pack,
    );
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), git_op.bytes_read);
}

#[test]
fn lines_on_a_channel_without_a_terminal_end_in_a_plain_newline() {
    let w = World::new();
    let gw = w.start(&[w.route(
        "t",
        "policy: {capabilities: {exec: false}, rules: [{allow: ops, when: {groups: ops}}]}",
    )]);
    let user = format!("{LOGIN}@t");
    let (code, _, err) = w.ssh(&gw, &user, &["echo", "nope"]);
    assert_eq!(code, 1);
    // ssh's own warnings end in CR LF; the gateway's line must not.
    let ours = err
        .split_inclusive('\n')
        .find(|l| l.starts_with("gatehouse:"))
        .unwrap_or_else(|| panic!("no line: {err:?}"));
    assert_eq!(
        ours,
        "gatehouse: running commands is not allowed on route t\n"
    );
    // With a pty the terminal needs CR LF.
    let (_, out, err) = w.ssh(&gw, &user, &["-tt", "echo", "nope"]);
    let both = format!("{out}{err}");
    assert!(
        both.contains("gatehouse: running commands is not allowed on route t\r\n"),
        "{both:?}"
    );
}

#[test]
fn the_spool_cap_holds_for_all_files_and_does_what_each_mode_says() {
    let w = World::new();
    let cap = 1_000_000u64;
    let gw = w.start_with(
        &[
            w.route("best", ""),
            w.route(
                "strict",
                "policy: {obligations: {record: strict}, rules: [{allow: ops, when: {groups: ops}}]}",
            ),
        ],
        &format!("recording:\n  spool_max_bytes: {cap}\n  segment_interval: 10s\n"),
    );
    // Best effort: past the cap, recording stops (audited) and the bytes
    // keep flowing. Meanwhile the spool, all files together, is watched.
    let spool = w.path("state/spool");
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (spool, watching) = (spool.clone(), watching.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(dir_size(&spool));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let out = w.path("best.bin");
    let script = format!(
        "{} 'head -c 4000000 /dev/urandom' > {}",
        ssh_line(&w, &gw, &format!("{LOGIN}@best")),
        out.display()
    );
    let (code, _, err) = w.sh(&gw, &script, Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 4_000_000);
    let full = gw.wait_for_log("event=\"recording.spool_full\"");
    assert!(full.contains("spool full"), "{full}");
    gw.wait_for_log("event=\"recording.stopped\"");
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!("spool peak {peak} bytes, cap {cap}");
    // The cap counts the spool files and the kept frames; the small
    // bookkeeping files (session, channel, segment lists) come on top.
    assert!(
        peak > 0 && peak <= cap + 16 * 1024,
        "spool held {peak} bytes"
    );
    // Strict: past the cap, the session ends with the line.
    let script = format!(
        "{} 'head -c 4000000 /dev/urandom' > {} 2>{}",
        ssh_line(&w, &gw, &format!("{LOGIN}@strict")),
        w.path("strict.bin").display(),
        w.path("strict.err").display()
    );
    let (code, _, _) = w.sh(&gw, &script, Duration::from_secs(60));
    assert_ne!(code, 0);
    let said = std::fs::read_to_string(w.path("strict.err")).unwrap();
    assert!(
        said.contains("gatehouse: session ended: the recording"),
        "{said:?}"
    );
    assert!(
        std::fs::metadata(w.path("strict.bin")).unwrap().len() < 4_000_000,
        "a strict route forwarded past its recording"
    );
    let peak = gw
        .log()
        .lines()
        .filter(|l| l.contains("event=\"recording.spool_full\""))
        .count();
    assert!(peak >= 2, "both sessions hit the cap");
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

#[test]
fn a_strict_session_refused_while_storage_is_down_lets_go_at_once_and_is_sealed_later() {
    let mut s3 = S3Server::start();
    let w = World::new();
    let gw = w.start_with(
        &[w.route(
            "strict",
            "policy: {obligations: {record: strict}, rules: [{allow: ops, when: {groups: ops}}]}",
        )],
        &s3_section(&w, &s3, ""),
    );
    let user = format!("{LOGIN}@strict");
    let (code, out, _) = w.ssh(&gw, &user, &["echo", "while-up"]);
    assert_eq!((code, out.trim()), (0, "while-up"));
    s3.stop();
    let started = Instant::now();
    let (code, _, err) = w.ssh(&gw, &user, &["echo", "while-down"]);
    assert_ne!(code, 0);
    assert!(err.contains("gatehouse:"), "{err}");
    // The gateway lets go of the session within seconds, not a minute.
    // Its recording is not failed: the spool is kept and it stays
    // `uploading` until storage answers.
    let closed = gw.wait_for_log("event=\"recording.seal_deferred\"");
    let took = started.elapsed();
    eprintln!("refused session released after {took:?}");
    assert!(took < Duration::from_secs(20), "held for {took:?}");
    assert!(closed.contains("spool kept"), "{closed}");
    assert!(closed.contains("status=\"uploading\""), "{closed}");
    // Storage comes back: the leftover spool is sealed without a restart.
    s3.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !gw
        .log()
        .contains("sealed recordings left when storage was down")
    {
        assert!(Instant::now() < deadline, "never swept:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}
