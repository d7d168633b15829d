//! Where recordings are stored: a local directory or an S3-compatible bucket, via object_store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{Error, Result};

/// Idle keep-alive connections kept to the S3 endpoint.
const S3_IDLE_CONNECTIONS: usize = 8;
/// How long an idle S3 connection is kept.
const S3_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where S3 credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`.
    Environment,
    /// A file of `key = value` lines with `aws_access_key_id`,
    /// `aws_secret_access_key` and optionally `aws_session_token` — the AWS
    /// shared-credentials format; `[section]` lines are ignored and the first
    /// value of each key wins.
    File(PathBuf),
    /// Keys given directly (tests, or config that already loaded them).
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: String,
    },
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing slash), may be empty.
    pub prefix: String,
    /// Endpoint URL for non-AWS servers, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Region to sign with.
    pub region: String,
    /// Allow plain HTTP endpoints (for local servers only).
    pub allow_http: bool,
    /// Use `bucket.host` addressing instead of `host/bucket` (path style, the default).
    pub virtual_hosted_style: bool,
    /// Where the keys come from.
    pub credentials: S3Credentials,
}

/// Which backend stores recordings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// A local directory (`file:///var/lib/gatehouse/recordings`), the embedded default.
    File(PathBuf),
    /// An S3-compatible bucket (`s3://bucket/prefix`).
    S3(S3Config),
}

impl StorageConfig {
    /// Parses `file:///abs/path` or `s3://bucket/prefix`. S3 settings other
    /// than bucket and prefix get defaults (region `us-east-1`, HTTPS, path
    /// style, credentials from the environment) and can be changed on the result.
    pub fn from_url(url: &str) -> Result<StorageConfig> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Error::StorageConfig(format!(
                    "{url}: a file URL needs an absolute path, like file:///var/lib/gatehouse/recordings"
                )));
            }
            return Ok(StorageConfig::File(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::StorageConfig(format!(
                    "{url}: the bucket name is missing"
                )));
            }
            return Ok(StorageConfig::S3(S3Config {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint: None,
                region: "us-east-1".into(),
                allow_http: false,
                virtual_hosted_style: false,
                credentials: S3Credentials::Environment,
            }));
        }
        Err(Error::StorageConfig(format!(
            "{url}: expected file:///path or s3://bucket/prefix"
        )))
    }
}

/// An opened store plus the key prefix recordings live under.
#[derive(Clone, Debug)]
pub struct Storage {
    /// The object_store backend.
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key (S3 prefix); empty for local directories.
    prefix: String,
}

impl Storage {
    /// Opens the configured backend. Nothing is contacted yet; see [`Storage::probe`].
    pub fn open(config: &StorageConfig) -> Result<Storage> {
        match config {
            StorageConfig::File(root) => {
                std::fs::create_dir_all(root).map_err(Error::spool(root))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| Error::StorageConfig(format!("{}: {e}", root.display())))?;
                Ok(Storage {
                    store: Arc::new(store),
                    prefix: String::new(),
                })
            }
            StorageConfig::S3(s3) => {
                // reqwest is built without a default TLS provider; use ring, as
                // the rest of Gatehouse does. Another install wins, which is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let (key_id, secret, token) = credentials(&s3.credentials)?;
                let retry = object_store::RetryConfig {
                    backoff: object_store::BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(1),
                        base: 2.0,
                    },
                    // The recorder retries uploads itself with its own backoff,
                    // so one request fails fast instead of blocking a seal.
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(5),
                };
                let options = object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(30))
                    // Many sessions sealing at once open many connections;
                    // keep a few warm and let the rest go soon after.
                    .with_pool_max_idle_per_host(S3_IDLE_CONNECTIONS)
                    .with_pool_idle_timeout(S3_IDLE_TIMEOUT)
                    .with_allow_http(s3.allow_http);
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                    .with_allow_http(s3.allow_http)
                    .with_retry(retry)
                    .with_client_options(options);
                if let Some(token) = token {
                    builder = builder.with_token(token);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let store = builder
                    .build()
                    .map_err(|e| Error::StorageConfig(format!("s3://{}: {e}", s3.bucket)))?;
                Ok(Storage {
                    store: Arc::new(store),
                    prefix: s3.prefix.clone(),
                })
            }
        }
    }

    /// The full object path of a key relative to the recordings root.
    pub(crate) fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The key relative to the recordings root of a full object path.
    pub(crate) fn relative(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return full.to_owned();
        }
        full.strip_prefix(&format!("{}/", self.prefix))
            .unwrap_or(full)
            .to_owned()
    }

    /// The object_store handle, for streaming uploads.
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes a whole object (overwriting an existing one with the same key).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(Error::storage(key))
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let result = self
            .store
            .get(&self.path(key))
            .await
            .map_err(Error::storage(key))?;
        result.bytes().await.map_err(Error::storage(key))
    }

    /// Lists keys (relative) under a prefix.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let path = self.path(prefix);
        let objects: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(Error::storage(prefix))?;
        Ok(objects.iter().map(|o| self.relative(&o.location)).collect())
    }

    /// Checks that storage accepts a write now: strict routes call this before
    /// admitting a session.
    pub async fn probe(&self, gateway_id: &str) -> Result<()> {
        let key = format!("_gatehouse/probe/{gateway_id}");
        self.put(&key, Bytes::from_static(b"ok")).await
    }
}

/// Resolves credentials to (key id, secret, session token).
fn credentials(source: &S3Credentials) -> Result<(String, String, Option<String>)> {
    let lookup = |values: &dyn Fn(&str) -> Option<String>, origin: &str| {
        let id = values("aws_access_key_id");
        let secret = values("aws_secret_access_key");
        match (id, secret) {
            (Some(id), Some(secret)) => Ok((id, secret, values("aws_session_token"))),
            _ => Err(Error::StorageConfig(format!(
                "{origin}: aws_access_key_id and aws_secret_access_key are both required"
            ))),
        }
    };
    match source {
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
        } => Ok((access_key_id.clone(), secret_access_key.clone(), None)),
        S3Credentials::Environment => lookup(
            &|key| {
                std::env::var(key.to_ascii_uppercase())
                    .ok()
                    .filter(|v| !v.is_empty())
            },
            "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
        ),
        S3Credentials::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::StorageConfig(format!("credentials file {}: {e}", path.display()))
            })?;
            let pairs: Vec<(String, String)> = text
                .lines()
                .filter_map(|line| {
                    let (k, v) = line.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                })
                .collect();
            lookup(
                &|key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
                &format!("credentials file {}", path.display()),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            StorageConfig::from_url("file:///var/rec").unwrap(),
            StorageConfig::File("/var/rec".into())
        );
        let StorageConfig::S3(s3) = StorageConfig::from_url("s3://b/x/y/").unwrap() else {
            unreachable!()
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "x/y"));
        assert!(StorageConfig::from_url("s3:///x").is_err());
        assert!(StorageConfig::from_url("file://rel").is_err());
        assert!(StorageConfig::from_url("http://x").is_err());
    }

    #[test]
    fn credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n",
        )
        .unwrap();
        let (id, secret, token) = credentials(&S3Credentials::File(path.clone())).unwrap();
        assert_eq!((id.as_str(), secret.as_str(), token), ("AK", "SK", None));
        std::fs::write(&path, "aws_access_key_id = AK\n").unwrap();
        assert!(credentials(&S3Credentials::File(path)).is_err());
    }
}
