//! Durable Raft hard state: the current term and the vote cast in it.
//!
//! The state lives in one file, `hardstate`, with two 4 KiB slots. Each save writes the slot
//! not holding the newest value and fdatasyncs before returning, so a node never sends a vote
//! response before the vote is on disk. A crash during a save can tear only the slot being written,
//! which fails its CRC, and loading picks the valid slot with the highest sequence number: the
//! old value or the new one, never a mix. The slots are 4 KiB apart so that one torn sector or
//! page write cannot touch both.
//!
//! On the `dma` backend a save writes the whole 4 KiB slot with O_DIRECT and fdatasyncs through
//! io_uring, so the executor keeps serving other tasks during an election's vote. The other
//! disk backends write and sync inline, as their logs do.
//!
//! Slot layout, little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic        b"RRHARDST"
//!      8     8  sequence     incremented on every save, starts at 1
//!     16     8  term
//!     24     1  has_vote     0 or 1
//!     25     7  reserved     zero
//!     32     8  voted_for    node id, 0 when has_vote is 0
//!     40     4  crc          CRC-32 of bytes 0..40
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use glommio::io::DmaFile;
use std::path::{Path, PathBuf};

use crate::{segment, stats, Backend, StorageError};

/// File name of the hard state inside the data directory.
pub const HARD_STATE_FILE_NAME: &str = "hardstate";

const SLOT_SIZE: u64 = 4096;
const SLOT_MAGIC: [u8; 8] = *b"RRHARDST";
const SLOT_LEN: usize = 44;

/// Raft state that must survive restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<u64>,
}

/// Storage of the hard state for one node.
pub struct MetaStore {
    state: HardState,
    /// File, path and sequence number of the newest slot; `None` for the memory backend.
    disk: Option<DiskSlots>,
}

struct DiskSlots {
    file: File,
    path: PathBuf,
    sequence: u64,
    backend: Backend,
    /// The same file opened with O_DIRECT for the `dma` backend, on the first save (opening a
    /// glommio file is asynchronous, and `open` is not).
    direct: Option<DmaFile>,
}

impl DiskSlots {
    /// Writes `slot` at `offset` as one whole slot with O_DIRECT, then fdatasyncs, all through
    /// io_uring.
    async fn save_direct(
        &mut self,
        slot: &[u8; SLOT_LEN],
        offset: u64,
    ) -> Result<(), StorageError> {
        if self.direct.is_none() {
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .dma_open(&self.path)
                .await
                .map_err(|e| {
                    StorageError::io("open hard state with O_DIRECT", &self.path, e.into())
                })?;
            self.direct = Some(file);
        }
        let file = self.direct.as_ref().expect("opened above");

        let mut buffer = file.alloc_dma_buffer(SLOT_SIZE as usize);
        let bytes = buffer.as_bytes_mut();
        bytes.fill(0);
        bytes[..SLOT_LEN].copy_from_slice(slot);
        let written = file
            .write_at(buffer, offset)
            .await
            .map_err(|e| StorageError::io_at("write hard state", &self.path, offset, e.into()))?;
        if written < SLOT_SIZE as usize {
            return Err(StorageError::io_at(
                "write hard state",
                &self.path,
                offset + written as u64,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("wrote {written} of {SLOT_SIZE} bytes"),
                ),
            ));
        }
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io_at("fdatasync hard state", &self.path, offset, e.into()))
    }
}

fn encode_slot(sequence: u64, state: &HardState) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[0..8].copy_from_slice(&SLOT_MAGIC);
    slot[8..16].copy_from_slice(&sequence.to_le_bytes());
    slot[16..24].copy_from_slice(&state.term.to_le_bytes());
    slot[24] = u8::from(state.voted_for.is_some());
    slot[32..40].copy_from_slice(&state.voted_for.unwrap_or(0).to_le_bytes());
    let crc = crc32fast::hash(&slot[0..40]);
    slot[40..44].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// Decodes a slot, returning `None` for an unwritten or torn one.
fn decode_slot(slot: &[u8]) -> Option<(u64, HardState)> {
    if slot.len() < SLOT_LEN || slot[0..8] != SLOT_MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes(slot[40..44].try_into().ok()?);
    if crc32fast::hash(&slot[0..40]) != stored || slot[24] > 1 {
        return None;
    }
    let sequence = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let term = u64::from_le_bytes(slot[16..24].try_into().ok()?);
    let voted_for =
        (slot[24] == 1).then(|| u64::from_le_bytes(slot[32..40].try_into().expect("8-byte slice")));
    Some((sequence, HardState { term, voted_for }))
}

impl MetaStore {
    /// Opens the hard state in `dir`, creating the directory and an initial state
    /// (term 0, no vote) if needed. The memory backend keeps the state in memory only.
    pub fn open(dir: &Path, backend: Backend) -> Result<MetaStore, StorageError> {
        if backend == Backend::Memory {
            return Ok(MetaStore {
                state: HardState::default(),
                disk: None,
            });
        }

        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io("create data directory", dir, e))?;
        let path = dir.join(HARD_STATE_FILE_NAME);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io("open hard state", &path, e))?;
        if !existed {
            segment::preallocate(&file, &path, 2 * SLOT_SIZE)?;
            file.sync_all()
                .map_err(|e| StorageError::io("fsync hard state", &path, e))?;
            stats::count_metadata_sync();
            segment::sync_dir(dir)?;
        }

        let mut newest: Option<(u64, HardState)> = None;
        for slot in 0..2u64 {
            let mut bytes = [0u8; SLOT_LEN];
            let read = file
                .read_at(&mut bytes, slot * SLOT_SIZE)
                .map_err(|e| StorageError::io_at("read hard state", &path, slot * SLOT_SIZE, e))?;
            if let Some((sequence, state)) = decode_slot(&bytes[..read]) {
                if newest.is_none_or(|(best, _)| sequence > best) {
                    newest = Some((sequence, state));
                }
            }
        }
        let (sequence, state) = newest.unwrap_or((0, HardState::default()));
        tracing::info!(path = %path.display(), term = state.term, voted_for = ?state.voted_for, "loaded hard state");

        Ok(MetaStore {
            state,
            disk: Some(DiskSlots {
                file,
                path,
                sequence,
                backend,
                direct: None,
            }),
        })
    }

    /// Returns the last saved hard state.
    pub fn load(&self) -> HardState {
        self.state
    }

    /// Saves `state`; it is durable when this returns.
    ///
    /// On `mmap` and `file` the write and fdatasync run inline on the calling thread, like
    /// their logs. On `dma` they go through io_uring, so the caller must run on a glommio
    /// executor.
    pub async fn save(&mut self, state: &HardState) -> Result<(), StorageError> {
        if let Some(disk) = &mut self.disk {
            let sequence = disk.sequence + 1;
            let offset = (sequence % 2) * SLOT_SIZE;
            let slot = encode_slot(sequence, state);
            if disk.backend == Backend::Dma {
                disk.save_direct(&slot, offset).await?;
            } else {
                disk.file
                    .write_all_at(&slot, offset)
                    .map_err(|e| StorageError::io_at("write hard state", &disk.path, offset, e))?;
                disk.file.sync_data().map_err(|e| {
                    StorageError::io_at("fdatasync hard state", &disk.path, offset, e)
                })?;
            }
            stats::count_metadata_sync();
            disk.sequence = sequence;
        }
        self.state = *state;
        Ok(())
    }
}

/// Reads the hard state file in `dir` without creating it, for the log tool.
pub(crate) fn read_hard_state(dir: &Path) -> Option<HardState> {
    let bytes = std::fs::read(dir.join(HARD_STATE_FILE_NAME)).ok()?;
    (0..2usize)
        .filter_map(|slot| bytes.get(slot * SLOT_SIZE as usize..).and_then(decode_slot))
        .max_by_key(|(sequence, _)| *sequence)
        .map(|(_, state)| state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn hard_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetaStore::open(dir.path(), Backend::File).unwrap();
        assert_eq!(store.load(), HardState::default());
        for term in 1..=5 {
            let state = HardState {
                term,
                voted_for: Some(term * 10),
            };
            block_on(store.save(&state)).unwrap();
        }
        drop(store);

        let store = MetaStore::open(dir.path(), Backend::Mmap).unwrap();
        assert_eq!(
            store.load(),
            HardState {
                term: 5,
                voted_for: Some(50)
            }
        );
    }

    #[test]
    fn torn_slot_keeps_previous_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetaStore::open(dir.path(), Backend::File).unwrap();
        block_on(store.save(&HardState {
            term: 3,
            voted_for: Some(1),
        }))
        .unwrap();
        block_on(store.save(&HardState {
            term: 4,
            voted_for: None,
        }))
        .unwrap();
        drop(store);

        // The term-4 save has sequence 2 and went to slot 0. Damage one byte of its term.
        let path = dir.path().join(HARD_STATE_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[17] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();

        let store = MetaStore::open(dir.path(), Backend::File).unwrap();
        assert_eq!(
            store.load(),
            HardState {
                term: 3,
                voted_for: Some(1)
            }
        );
    }

    #[test]
    fn dma_saves_open_with_the_other_backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // A one-hour preemption timer, as in the other dma tests: glommio 0.9 can park with
        // runnable work when its timer fires.
        let executor = glommio::LocalExecutorBuilder::default()
            .preempt_timer(std::time::Duration::from_secs(3600))
            .make()
            .unwrap();
        executor.run(async move {
            let mut store = MetaStore::open(&path, Backend::Dma).unwrap();
            for term in 1..=3 {
                let state = HardState {
                    term,
                    voted_for: (term != 3).then_some(term + 100),
                };
                store.save(&state).await.unwrap();
            }
        });

        // Three saves: sequences 1, 2, 3, so the newest is in slot 1 and the one before in slot 0.
        let store = MetaStore::open(dir.path(), Backend::File).unwrap();
        assert_eq!(
            store.load(),
            HardState {
                term: 3,
                voted_for: None
            }
        );
        let bytes = std::fs::read(dir.path().join(HARD_STATE_FILE_NAME)).unwrap();
        assert_eq!(
            bytes.len() as u64,
            2 * SLOT_SIZE,
            "the file keeps its two slots"
        );
        assert_eq!(
            decode_slot(&bytes[..]).map(|(sequence, _)| sequence),
            Some(2)
        );
    }

    #[test]
    fn memory_backend_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetaStore::open(dir.path(), Backend::Memory).unwrap();
        block_on(store.save(&HardState {
            term: 2,
            voted_for: Some(7),
        }))
        .unwrap();
        assert_eq!(store.load().term, 2);
        assert!(!dir.path().join(HARD_STATE_FILE_NAME).exists());
    }
}
