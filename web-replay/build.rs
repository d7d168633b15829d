//! Embeds the browser player installed from `assets/package-lock.json`
//! (by `dev/install-deps`) so the binary serves it with no files beside
//! it. Without it the build still succeeds, and the player's pages say
//! how to install it.

use std::path::PathBuf;

const FILES: [(&str, &str); 2] = [
    (
        "PLAYER_JS",
        "asciinema-player/dist/bundle/asciinema-player.min.js",
    ),
    (
        "PLAYER_CSS",
        "asciinema-player/dist/bundle/asciinema-player.css",
    ),
];

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("assets")
        .join("node_modules");
    println!("cargo::rerun-if-changed=assets/package-lock.json");
    let mut out = String::new();
    for (name, file) in FILES {
        let path = dir.join(file);
        println!("cargo::rerun-if-changed={}", path.display());
        if path.is_file() {
            out += &format!(
                "pub(crate) const {name}: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                path.display().to_string()
            );
        } else {
            println!(
                "cargo::warning=web-replay: {} is not installed (run dev/install-deps); the player is left out",
                file
            );
            out += &format!("pub(crate) const {name}: Option<&[u8]> = None;\n");
        }
    }
    let target = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("player.rs");
    if let Err(e) = std::fs::write(&target, out) {
        println!("cargo::error=cannot write {}: {e}", target.display());
    }
}
