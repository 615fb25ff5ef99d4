//! The uploads in progress: each one's record (kept in the state
//! directory, so an upload survives a restart), its partial file once
//! open, and when a chunk last touched it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::info;

use super::UPLOADS_DIR;
use crate::engine::atomic::PartialFile;
use crate::limits::HttpLimits;

/// Who began an upload: it goes on only while they still may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// The shared token.
    Shared,
    /// A client token, by name and hash (a re-issued token is another).
    Client { name: String, sha256: String },
    /// A share link, by id.
    Link { id: String },
}

/// What the state directory keeps of an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The file it makes, beneath its owner's root.
    pub target: String,
    /// Its length in bytes.
    pub length: u64,
    /// The BLAKE3 the whole file must have, hex, if the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Who made it.
    pub owner: Owner,
}

/// One upload in progress.
pub(super) struct Upload {
    pub(super) record: Record,
    /// The partial file, open once a chunk or `HEAD` needed it.
    pub(super) partial: Option<PartialFile>,
    pub(super) touched: Instant,
}

/// The uploads in progress.
pub(crate) struct Uploads {
    pub(super) dir: PathBuf,
    pub(super) limits: HttpLimits,
    pub(super) table: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
}

impl Uploads {
    /// The uploads recorded in `state_dir`, from an earlier run too.
    pub(crate) fn load(state_dir: &std::path::Path, limits: HttpLimits) -> Uploads {
        let dir = state_dir.join(UPLOADS_DIR);
        let mut table = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name.strip_suffix(".json") else {
                    continue;
                };
                let record = std::fs::read(entry.path())
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok());
                match record {
                    Some(record) if table.len() < limits.max_uploads => {
                        let upload = Upload {
                            record,
                            partial: None,
                            touched: Instant::now(),
                        };
                        table.insert(id.to_string(), Arc::new(tokio::sync::Mutex::new(upload)));
                    }
                    _ => {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Uploads {
            dir,
            limits,
            table: Mutex::new(table),
        }
    }

    pub(super) fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Upload>>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Upload>>> {
        self.lock().get(id).cloned()
    }

    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
    }

    /// Uploads in progress now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

pub(super) fn save_record(dir: &std::path::Path, id: &str, record: &Record) -> std::io::Result<()> {
    crate::engine::state::create_dir(dir)?;
    let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    crate::engine::state::write_private(&dir.join(format!("{id}.json")), &json)
}

/// Forgets uploads that no chunk touched within the upload TTL, removing
/// their partial files.
pub(super) fn sweep(uploads: &Uploads) {
    let ttl = uploads.limits.upload_ttl;
    let stale: Vec<(String, Arc<tokio::sync::Mutex<Upload>>)> = uploads
        .lock()
        .iter()
        .filter(|(_, u)| u.try_lock().is_ok_and(|u| u.touched.elapsed() >= ttl))
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect();
    for (id, upload) in stale {
        if let Ok(mut upload) = upload.try_lock() {
            if let Some(mut partial) = upload.partial.take() {
                partial.remove();
            }
        }
        info!("http: an upload left untouched for {ttl:?} was given up");
        uploads.forget(&id);
    }
}
