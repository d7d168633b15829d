//! A recorded channel as the pages use it: the signed metadata, the
//! verification result, the timeline and the keyframe index (from the
//! sidecar beside the sealed object when it belongs to these bytes, else
//! built and stored for the next open). Opened channels are kept in a
//! small cache, so the player's requests (the page, the find bar, the
//! screen at a time) do not rebuild the model each time.

use std::sync::{Arc, Mutex, PoisonError};

use recorder::asciicast::Reader;
use recorder::{Catalog, SignedMeta, VerifyReport};
use terminal::{HashReader, Index, Loaded, Timeline};

use crate::Error;

/// Channels kept open at once.
const CACHE: usize = 8;

/// One channel of a sealed session, ready to search and seek.
pub struct Opened {
    /// The signed metadata (session, channels).
    pub signed: SignedMeta,
    /// The channel's name.
    pub channel: String,
    /// Signature, segment hashes, chain and sealed objects, checked.
    pub report: VerifyReport,
    /// Every step of the channel.
    pub timeline: Timeline,
    /// Keyframes and on-screen text.
    pub index: Index,
    /// Where the recording stopped parsing, if it did.
    pub damage: Option<String>,
}

/// The sidecar's object key, beside the sealed recording.
pub fn sidecar_key(sealed_key: &str) -> String {
    match sealed_key.strip_suffix(".cast.zst") {
        Some(stem) => format!("{stem}.keyframes.zst"),
        None => format!("{sealed_key}.keyframes.zst"),
    }
}

/// Reads a sealed channel as a stream out of the decompressor (only the
/// compressed object and the timeline's packed steps are held) and loads
/// or builds its keyframe index; a newly built index of an undamaged
/// recording is stored as its sidecar (best effort: read-only storage
/// still plays). CPU work runs on the blocking pool.
pub async fn load(
    catalog: &Catalog,
    session_id: &str,
    sealed_key: &str,
) -> Result<(Timeline, Index, Option<String>), Error> {
    let what = format!("session {session_id} {sealed_key}");
    let sealed = catalog
        .storage()
        .get(sealed_key)
        .await
        .map_err(|e| Error::Recording(format!("{what}: {e}")))?;
    let sidecar_key = sidecar_key(sealed_key);
    let sidecar = catalog.storage().get(&sidecar_key).await.ok();
    let key = sealed_key.to_owned();
    let built = tokio::task::spawn_blocking(move || {
        let stream =
            recorder::sealed_reader(&sealed, &key).map_err(|e| Error::Recording(e.to_string()))?;
        let (header, mut reader) = Reader::new(std::io::BufReader::new(HashReader::new(stream)))
            .map_err(|e| Error::Recording(e.to_string()))?;
        let (timeline, damage) = Timeline::read(&header, &mut reader);
        let hash = reader.into_inner().into_inner().hash();
        let (index, loaded) = Index::load_or_build(sidecar.as_deref(), &hash, &timeline)
            .map_err(|e| Error::Recording(e.to_string()))?;
        let store = (loaded != Loaded::FromSidecar && damage.is_none())
            .then(|| {
                if let Loaded::Rebuilt(why) = &loaded {
                    tracing::warn!(reason = %why, "rebuilt the keyframe sidecar");
                }
                index.to_sidecar(&hash).ok()
            })
            .flatten();
        Ok::<_, Error>((timeline, index, damage.map(|d| d.to_string()), store))
    })
    .await
    .map_err(|e| Error::Recording(format!("{what}: {e}")))??;
    let (timeline, index, damage, store) = built;
    if let Some(data) = store
        && let Err(e) = catalog.storage().put(&sidecar_key, data.into()).await
    {
        tracing::warn!(session_id, error = %e, "cannot store the keyframe sidecar");
    }
    Ok((timeline, index, damage))
}

/// Recently opened channels, newest last.
#[derive(Default)]
pub(crate) struct Cache {
    open: Mutex<Vec<Arc<Opened>>>,
}

impl Cache {
    /// The channel, opened and verified now if it is not in the cache.
    /// `channel` `None` is the first.
    pub(crate) async fn open(
        &self,
        catalog: &Catalog,
        trusted: Option<&[u8; 32]>,
        session_id: &str,
        channel: Option<&str>,
    ) -> Result<Arc<Opened>, Error> {
        let hit = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|o| {
                o.signed.meta.session.session_id == session_id
                    && channel.is_none_or(|c| c == o.channel)
            })
            .cloned();
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let signed = catalog
            .meta(session_id)
            .await
            .map_err(|e| Error::Recording(e.to_string()))?;
        let meta = match channel {
            Some(name) => signed.meta.channels.iter().find(|c| c.channel == name),
            None => signed.meta.channels.first(),
        }
        .ok_or_else(|| Error::NotFound(format!("session {session_id} has no such channel")))?
        .clone();
        let report = catalog
            .verify(session_id, trusted)
            .await
            .map_err(|e| Error::Recording(e.to_string()))?;
        let (timeline, index, damage) = load(catalog, session_id, &meta.sealed_key).await?;
        let opened = Arc::new(Opened {
            signed,
            channel: meta.channel,
            report,
            timeline,
            index,
            damage,
        });
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.push(Arc::clone(&opened));
        if open.len() > CACHE {
            open.remove(0);
        }
        Ok(opened)
    }
}
