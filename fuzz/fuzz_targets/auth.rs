#![no_main]

use std::sync::OnceLock;

use fuzz_targets::Harness;

/// One gateway per fuzzing process, in a directory of its own.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the harness directory");
        Harness::new(&dir).expect("open the fuzzing gateway")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().auth(data);
});
