//! Recordings in end-to-end tests: a `recording:` section for a real S3
//! server (SeaweedFS), and the recorder's own catalog over a world's state
//! database, the way `gatehouse sessions` and the players read it.

use std::sync::Arc;

use recorder::{Catalog, StorageConfig};
use sshd_test::s3::S3Server;

use super::World;

/// A current-thread runtime for the catalog's async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The world's state database, where the recording index is.
pub fn state_store(w: &World) -> Arc<dyn state::Store> {
    Arc::new(state::Sqlite::open(&w.path("state")).unwrap())
}

/// The catalog of a world whose recordings use the default file storage.
pub fn file_catalog(w: &World) -> Catalog {
    let storage = StorageConfig::File(w.path("state/recordings"));
    Catalog::open(state_store(w), &storage).unwrap()
}

/// Writes the S3 credentials file and returns config text: a `recording:`
/// section for `s3` with 1 s segments, then `extra` (more top-level
/// sections).
pub fn s3_section(w: &World, s3: &S3Server, extra: &str) -> String {
    std::fs::write(
        w.path("s3-credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key(),
            s3.secret_key()
        ),
    )
    .unwrap();
    format!(
        "recording:\n  storage: s3://{}/gatehouse\n  s3_endpoint: {}\n  s3_region: {}\n  s3_credentials_file: s3-credentials\n  segment_interval: 1s\n{extra}",
        s3.bucket(),
        s3.endpoint(),
        s3.region()
    )
}

/// The catalog of a world whose recordings go to `s3`.
pub fn s3_catalog(w: &World, s3: &S3Server) -> Catalog {
    let mut config = StorageConfig::from_url(&format!("s3://{}/gatehouse", s3.bucket())).unwrap();
    if let StorageConfig::S3(c) = &mut config {
        c.endpoint = Some(s3.endpoint());
        c.allow_http = true;
        c.region = s3.region().to_owned();
        c.credentials = recorder::S3Credentials::Static {
            access_key_id: s3.access_key().to_owned(),
            secret_access_key: s3.secret_key().to_owned(),
        };
    }
    Catalog::open(state_store(w), &config).unwrap()
}
