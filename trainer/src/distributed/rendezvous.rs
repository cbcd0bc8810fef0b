//! Two [`Rendezvous`] implementations for use outside the coordinator: in memory
//! (ranks as threads of one process) and through a file (ranks as processes on one
//! machine or a shared file system). The coordinator's RPC is the production one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::Rendezvous;

/// Ranks that are threads of one process.
#[derive(Default)]
pub struct MemoryRendezvous {
    blob: Mutex<Option<Vec<u8>>>,
    published: Condvar,
}

impl MemoryRendezvous {
    pub fn published(&self) -> Option<Vec<u8>> {
        self.blob.lock().ok().and_then(|blob| blob.clone())
    }
}

impl Rendezvous for MemoryRendezvous {
    fn publish(&self, id: &[u8]) -> Result<(), String> {
        let mut blob = self.blob.lock().map_err(|_| "rendezvous lock poisoned")?;
        *blob = Some(id.to_vec());
        self.published.notify_all();
        Ok(())
    }

    fn fetch(&self, cancel: &AtomicBool) -> Result<Vec<u8>, String> {
        let mut blob = self.blob.lock().map_err(|_| "rendezvous lock poisoned")?;
        loop {
            if let Some(id) = blob.as_ref() {
                return Ok(id.clone());
            }
            if cancel.load(Ordering::SeqCst) {
                return Err("cancelled before rank 0 published".into());
            }
            blob = self
                .published
                .wait_timeout(blob, Duration::from_millis(50))
                .map_err(|_| "rendezvous lock poisoned")?
                .0;
        }
    }
}

/// Ranks that share a file system: rank 0 writes the blob to a temporary name and
/// renames it into place, so readers never see half a blob. The file must not exist
/// before rank 0 publishes (use a fresh path per gang).
pub struct FileRendezvous {
    pub path: PathBuf,
}

impl Rendezvous for FileRendezvous {
    fn publish(&self, id: &[u8]) -> Result<(), String> {
        let temp = self.path.with_extension("tmp");
        std::fs::write(&temp, id)
            .and_then(|()| std::fs::rename(&temp, &self.path))
            .map_err(|err| format!("{}: {err}", self.path.display()))
    }

    fn fetch(&self, cancel: &AtomicBool) -> Result<Vec<u8>, String> {
        loop {
            match std::fs::read(&self.path) {
                Ok(id) => return Ok(id),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(format!("{}: {err}", self.path.display())),
            }
            if cancel.load(Ordering::SeqCst) {
                return Err("cancelled before rank 0 published".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
