//! Puts the commit the binary was built from into `gatehouse --version`:
//! `GATEHOUSE_COMMIT` from the environment (a packaging build without a
//! git checkout can set it), else `git describe`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GATEHOUSE_COMMIT");
    // A new commit or checkout changes HEAD (or the ref it names).
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("GATEHOUSE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["describe", "--always", "--dirty", "--abbrev=12"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={commit}");
}
