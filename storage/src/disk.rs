//! Segmented log on disk, shared by the `mmap`, `file` and `dma` backends.
//!
//! The log is a sequence of segment files (see `segment`). The last one is active: appends go
//! to its end, and it is rolled when the next record would not fit or when it contains
//! `max_entries_per_segment` entries. An in-memory index stores the offset, length and term of
//! every record, so `term` needs no I/O and a read is one positioned read or one slice of the
//! mapping.
//!
//! Durability rules:
//! - `append` writes the whole batch and then syncs once under `SyncPolicy::Batch` (group
//!   commit). A batch that crosses a segment boundary also syncs the finished segment, because a
//!   segment is always synced before the next one is created. Torn writes can therefore only
//!   sit in the last segment.
//! - Truncating the suffix removes whole segments newest first, syncing the directory after each
//!   removal, and then cuts the segment that contains the new end with one ftruncate. Every
//!   crash point leaves a prefix of the old log without a gap.
//! - Dropping the prefix removes whole segments oldest first, with the same directory sync, so
//!   every crash point leaves a suffix without a gap.
//! - A failed write or sync poisons the log: after a failed fdatasync the kernel may have
//!   discarded the dirty pages, and only a restart with recovery shows what is on disk.
//!
//! With `mmap` and `file`, system calls are made inline on the calling thread, so a glommio
//! executor stalls for the length of each fdatasync or msync. Under `SyncPolicy::Batch` the append cannot be
//! acknowledged before the sync finishes anyway, and group commit amortises one sync over the
//! whole batch; what the stall costs is the other tasks of that core, such as reading the next
//! requests from sockets. The `dma` backend removes the stall by syncing through io_uring.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::io::SegmentFile;
use crate::record::{self, MAX_PAYLOAD_LEN};
use crate::segment::{self, RecordLoc, Tail, SEGMENT_HEADER_LEN};
use crate::stats;
use crate::{Entry, LogConfig, StorageError, SyncPolicy};

/// Name of the lock file that keeps two processes from opening one log directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Exclusive advisory lock on a log directory, released when dropped.
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io("open lock file", &path, e))?;

        // SAFETY: flock only reads its integer arguments; the descriptor stays open because
        // `file` is moved into the returned lock.
        let code = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if code != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            return Err(StorageError::io("lock", &path, error));
        }
        Ok(DirLock { _file: file })
    }
}

/// One open segment and the index of its records.
struct Segment<F> {
    first_index: u64,
    file: F,
    records: Vec<RecordLoc>,
    /// Offset where the next record goes.
    write_end: u64,
    /// Start of the bytes written since the last sync.
    dirty_from: Option<u64>,
}

impl<F: SegmentFile> Segment<F> {
    async fn open_new(dir: &Path, first_index: u64, size: u64) -> Result<Self, StorageError> {
        let path = segment::create_segment(dir, first_index, size)?;
        Ok(Segment {
            first_index,
            file: F::open(&path).await?,
            records: Vec::new(),
            write_end: SEGMENT_HEADER_LEN as u64,
            dirty_from: None,
        })
    }

    /// Index the next record of this segment would have.
    fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        self.file.write_at(self.write_end, data).await?;
        stats::count_bytes_written(data.len());
        self.dirty_from.get_or_insert(self.write_end);
        self.write_end += data.len() as u64;
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(from) = self.dirty_from {
            self.file.sync_range(from, self.write_end - from).await?;
            stats::count_data_sync();
            self.dirty_from = None;
        }
        Ok(())
    }
}

/// Segmented, CRC-checked log over segment files of type `F`.
pub(crate) struct SegmentedLog<F: SegmentFile> {
    dir: PathBuf,
    config: LogConfig,
    /// Never empty; the last segment is the active one.
    segments: Vec<Segment<F>>,
    durable_index: u64,
    last_sync: Instant,
    encode_buf: Vec<u8>,
    poisoned: Option<String>,
    _lock: DirLock,
}

impl<F: SegmentFile> SegmentedLog<F> {
    /// Opens or creates the log in `dir`, recovering from a crash as described in `recover`.
    pub(crate) async fn open(dir: &Path, config: &LogConfig) -> Result<Self, StorageError> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(|e| StorageError::io("create log directory", dir, e))?;
        let lock = DirLock::acquire(dir)?;
        F::check_dir(dir)?;

        let mut segments = recover::<F>(dir, config).await?;
        if segments.is_empty() {
            segments.push(Segment::open_new(dir, 1, config.segment_size).await?);
        }

        let mut log = SegmentedLog {
            dir: dir.to_path_buf(),
            config: config.clone(),
            segments,
            durable_index: 0,
            last_sync: Instant::now(),
            encode_buf: Vec::new(),
            poisoned: None,
            _lock: lock,
        };

        // Entries found on disk may still be only in the page cache (an unsynced append before a
        // process crash). Syncing once here lets durable_index start at last_index honestly.
        let last = log.segments.len() - 1;
        let end = log.segments[last].write_end;
        log.segments[last].file.sync_range(0, end).await?;
        stats::count_data_sync();
        log.durable_index = log.last_index();

        tracing::info!(
            dir = %dir.display(),
            backend = %config.backend,
            segments = log.segments.len(),
            first_index = log.first_index(),
            last_index = log.last_index(),
            "opened log"
        );
        Ok(log)
    }

    fn active(&mut self) -> &mut Segment<F> {
        self.segments
            .last_mut()
            .expect("the log always has an active segment")
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Records an I/O failure so that every later call fails too.
    fn poison<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(error) = &result {
            tracing::error!(dir = %self.dir.display(), %error, "log I/O failed; rejecting further operations");
            self.poisoned = Some(error.to_string());
        }
        result
    }

    fn is_empty(&self) -> bool {
        self.segments.len() == 1 && self.segments[0].records.is_empty()
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.segments[0].first_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.segments[self.segments.len() - 1].next_index() - 1
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    pub(crate) fn durable_index(&self) -> u64 {
        self.durable_index
    }

    pub(crate) fn sync_deadline(&self) -> Option<Instant> {
        match self.config.sync {
            SyncPolicy::Interval(interval) if self.durable_index < self.last_index() => {
                Some(self.last_sync + interval)
            }
            _ => None,
        }
    }

    /// Returns the position of the segment that contains `index`, which must be in the log.
    fn locate(&self, index: u64) -> usize {
        self.segments
            .partition_point(|segment| segment.first_index <= index)
            - 1
    }

    fn record_loc(&self, index: u64) -> Option<(usize, RecordLoc)> {
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        let position = self.locate(index);
        let segment = &self.segments[position];
        let loc = segment.records[(index - segment.first_index) as usize];
        Some((position, loc))
    }

    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        self.record_loc(index).map(|(_, loc)| loc.term)
    }

    pub(crate) async fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };

        self.check_append(entries)?;
        if self.is_empty() && first.index != self.last_index() + 1 {
            let result = self.restart_empty_log_at(first.index).await;
            self.poison(result)?;
        }

        let result = self.write_entries(entries).await;
        self.poison(result)?;

        let sync_now = match self.config.sync {
            SyncPolicy::Batch => true,
            SyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
            SyncPolicy::Never => false,
        };
        if sync_now {
            self.sync().await?;
        }
        Ok(())
    }

    fn check_append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let first = entries[0].index;
        if first == 0 {
            return Err(StorageError::InvalidIndex {
                op: "append",
                index: 0,
                reason: "Raft indexes start at 1".to_string(),
            });
        }
        if !self.is_empty() && first != self.last_index() + 1 {
            return Err(StorageError::NotContiguous {
                expected: self.last_index() + 1,
                got: first,
            });
        }

        for (offset, entry) in entries.iter().enumerate() {
            let expected = first + offset as u64;
            if entry.index != expected {
                return Err(StorageError::NotContiguous {
                    expected,
                    got: entry.index,
                });
            }
            if entry.payload.len() > MAX_PAYLOAD_LEN {
                return Err(StorageError::EntryTooLarge {
                    index: entry.index,
                    len: entry.payload.len(),
                    max: MAX_PAYLOAD_LEN,
                });
            }
        }
        Ok(())
    }

    /// Replaces the empty active segment by one that starts at `first_index`, because an empty
    /// log accepts any first index (after a snapshot install, for example).
    async fn restart_empty_log_at(&mut self, first_index: u64) -> Result<(), StorageError> {
        let old = self
            .segments
            .pop()
            .expect("the log always has an active segment");
        let old_path = old.path().to_path_buf();
        drop(old);

        // Removing first and creating second means a crash in between leaves an empty directory,
        // which opens as an empty log: the same content as either side of the crash.
        segment::remove_segment(&self.dir, &old_path)?;
        let segment = Segment::open_new(&self.dir, first_index, self.config.segment_size).await?;
        self.segments.push(segment);
        self.durable_index = first_index - 1;
        Ok(())
    }

    /// Encodes `entries` and writes them to the active segment, rolling as needed.
    async fn write_entries(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut buf = std::mem::take(&mut self.encode_buf);
        buf.clear();
        let result = self.encode_and_write(entries, &mut buf).await;
        self.encode_buf = buf;
        result
    }

    async fn encode_and_write(
        &mut self,
        entries: &[Entry],
        buf: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        for entry in entries {
            let record_len = record::encoded_len(entry.payload.len()) as u64;
            let max_entries = self.config.max_entries_per_segment;
            let active = self.active();
            let full_by_count = active.records.len() as u64 >= max_entries;
            let full_by_size = active.write_end + buf.len() as u64 + record_len > active.file.len();
            if full_by_count || full_by_size {
                active.write(buf).await?;
                buf.clear();
                self.roll(entry.index, record_len).await?;
            }

            let active = self.active();
            let offset = active.write_end + buf.len() as u64;
            record::encode(buf, entry.index, entry.term, &entry.payload);
            active.records.push(RecordLoc {
                offset,
                len: record_len as u32,
                term: entry.term,
            });
        }
        self.active().write(buf).await
    }

    /// Makes room for a record of `record_len` bytes with index `next_index`.
    async fn roll(&mut self, next_index: u64, record_len: u64) -> Result<(), StorageError> {
        let size = self
            .config
            .segment_size
            .max(SEGMENT_HEADER_LEN as u64 + record_len);

        if self.active().records.is_empty() {
            // The record is larger than an empty segment, so replace the segment by a bigger one
            // under the same name. The rename is atomic: a crash leaves the old or the new
            // empty segment, and both open as the same empty log.
            let first_index = self.active().first_index;
            let segment = Segment::open_new(&self.dir, first_index, size).await?;
            *self.active() = segment;
            return Ok(());
        }

        // A segment is durable before the next one exists, so a torn write can only be in the
        // last segment and recovery never has to guess whether a gap is damage.
        self.active().sync().await?;
        let segment = Segment::open_new(&self.dir, next_index, size).await?;
        self.segments.push(segment);
        tracing::debug!(dir = %self.dir.display(), first_index = next_index, "rolled segment");
        Ok(())
    }

    pub(crate) async fn sync(&mut self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let result = self.active().sync().await;
        self.poison(result)?;
        self.durable_index = self.last_index();
        self.last_sync = Instant::now();
        Ok(())
    }

    pub(crate) async fn read(&self, index: u64) -> Result<Option<Entry>, StorageError> {
        self.check_poisoned()?;
        let Some((position, loc)) = self.record_loc(index) else {
            return Ok(None);
        };
        let segment = &self.segments[position];
        let bytes = segment.file.read_span(loc.offset, loc.len as usize).await?;
        decode_entry(segment.path(), loc.offset, index, &bytes).map(Some)
    }

    pub(crate) async fn read_range(
        &self,
        from: u64,
        to_exclusive: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.check_poisoned()?;
        let from = from.max(self.first_index());
        let to_exclusive = to_exclusive.min(self.last_index() + 1);
        let mut entries = Vec::new();
        let mut bytes_read = 0usize;
        let mut index = from;

        while index < to_exclusive {
            // Collect the records of one segment that fit the byte budget, then read them with
            // one positioned read or one slice of the mapping.
            let position = self.locate(index);
            let segment = &self.segments[position];
            let first_slot = (index - segment.first_index) as usize;
            let segment_end =
                (to_exclusive - segment.first_index).min(segment.records.len() as u64);
            let mut last_slot = first_slot;
            while (last_slot as u64) < segment_end {
                let payload_len =
                    segment.records[last_slot].len as usize - record::RECORD_HEADER_LEN;
                let is_first = entries.is_empty() && last_slot == first_slot;
                if !is_first && bytes_read + payload_len > max_bytes {
                    break;
                }
                bytes_read += payload_len;
                last_slot += 1;
            }
            if last_slot == first_slot {
                break;
            }

            let start = segment.records[first_slot].offset;
            let end_loc = segment.records[last_slot - 1];
            let span_len = (end_loc.offset + end_loc.len as u64 - start) as usize;
            let span = segment.file.read_span(start, span_len).await?;
            for slot in first_slot..last_slot {
                let loc = segment.records[slot];
                let relative = (loc.offset - start) as usize;
                let bytes = &span[relative..relative + loc.len as usize];
                entries.push(decode_entry(segment.path(), loc.offset, index, bytes)?);
                index += 1;
            }
            if (last_slot as u64) < segment_end {
                break;
            }
        }
        Ok(entries)
    }

    pub(crate) async fn truncate_suffix(&mut self, from: u64) -> Result<(), StorageError> {
        self.check_poisoned()?;
        if from > self.last_index() {
            return Ok(());
        }
        if from < self.first_index() {
            return Err(StorageError::InvalidIndex {
                op: "truncate_suffix",
                index: from,
                reason: format!(
                    "entries before the first index {} were compacted and cannot be truncated",
                    self.first_index()
                ),
            });
        }
        let result = self.truncate_suffix_inner(from);
        self.poison(result)
    }

    fn truncate_suffix_inner(&mut self, from: u64) -> Result<(), StorageError> {
        let keep = self.locate(from);

        // Newest first, with a directory sync after each removal (see the module doc).
        while self.segments.len() > keep + 1 {
            let segment = self.segments.pop().expect("more segments than kept");
            let path = segment.path().to_path_buf();
            drop(segment);
            segment::remove_segment(&self.dir, &path)?;
        }

        let segment = self.active();
        let slot = (from - segment.first_index) as usize;
        let offset = segment
            .records
            .get(slot)
            .map_or(segment.write_end, |loc| loc.offset);
        segment::cut_segment(
            segment.file.file(),
            segment.file.path(),
            offset,
            segment.file.len(),
        )?;
        segment.records.truncate(slot);
        segment.write_end = offset;
        segment.dirty_from = None;

        self.durable_index = self.last_index();
        tracing::debug!(dir = %self.dir.display(), from, "truncated log suffix");
        Ok(())
    }

    pub(crate) async fn compact_prefix(&mut self, upto: u64) -> Result<(), StorageError> {
        self.check_poisoned()?;
        if upto < self.first_index() {
            return Ok(());
        }
        let result = self.compact_prefix_inner(upto).await;
        self.poison(result)
    }

    async fn compact_prefix_inner(&mut self, upto: u64) -> Result<(), StorageError> {
        // Oldest first, with a directory sync after each removal (see the module doc). A segment
        // goes when the next one starts at or before upto + 1, so all its entries are <= upto.
        while self.segments.len() > 1 && self.segments[1].first_index <= upto + 1 {
            let segment = self.segments.remove(0);
            let path = segment.path().to_path_buf();
            drop(segment);
            segment::remove_segment(&self.dir, &path)?;
        }

        let only = &self.segments[0];
        let covers_active =
            self.segments.len() == 1 && upto >= only.first_index && upto >= only.next_index() - 1;
        if covers_active && !(only.records.is_empty() && only.first_index == upto + 1) {
            // Every entry is dropped: start an empty log right after `upto`.
            self.restart_empty_log_at(upto + 1).await?;
        }
        tracing::debug!(dir = %self.dir.display(), upto, first_index = self.first_index(), "compacted log prefix");
        Ok(())
    }
}

/// Decodes a record read back from a segment and checks that it is the expected entry.
fn decode_entry(path: &Path, offset: u64, index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let (header, payload) =
        record::decode(bytes).map_err(|problem| corrupt(problem.to_string()))?;
    if header.index != index {
        return Err(corrupt(format!(
            "record has index {} but index {index} was expected",
            header.index
        )));
    }
    Ok(Entry {
        index,
        term: header.term,
        payload: payload.to_vec(),
    })
}

/// A problem found while recovering, before repair is considered.
struct RecoveryProblem {
    /// Position of the affected segment in the directory listing.
    position: usize,
    path: PathBuf,
    offset: u64,
    reason: String,
}

/// Scans every segment of `dir` and rebuilds the index.
///
/// A torn tail of the last segment is cut back to its last valid record. Any other problem
/// (an invalid header, a gap between segments, an invalid record followed by valid data, a
/// torn tail in an earlier segment) fails with `StorageError::Corrupt`, unless
/// `config.repair` is set: then the log is truncated at the problem. Both cuts are single
/// ftruncate or unlink operations that keep everything before the cut point, so a crash during
/// recovery leaves a state that recovers to the same result.
async fn recover<F: SegmentFile>(
    dir: &Path,
    config: &LogConfig,
) -> Result<Vec<Segment<F>>, StorageError> {
    let names = segment::list_segments(dir, true)?;
    let mut segments: Vec<Segment<F>> = Vec::with_capacity(names.len());

    for (position, name) in names.iter().enumerate() {
        let is_last = position + 1 == names.len();
        if is_last {
            restore_preallocation(&name.path, config.segment_size)?;
        }
        let file = F::open(&name.path).await?;
        let problem = |offset: u64, reason: String| RecoveryProblem {
            position,
            path: name.path.clone(),
            offset,
            reason,
        };

        let scan = match file.scan().await? {
            Ok(scan) => scan,
            Err(reason) => {
                return repair_or_fail(dir, config, &names, segments, problem(0, reason))
            }
        };
        if scan.first_index != name.first_index {
            let reason = format!(
                "header first index {} does not match the file name",
                scan.first_index
            );
            return repair_or_fail(dir, config, &names, segments, problem(0, reason));
        }
        if let Some(previous) = segments.last() {
            if previous.next_index() != scan.first_index {
                let reason = format!(
                    "gap in the log: the previous segment ends at index {} but this one starts at {}",
                    previous.next_index() - 1,
                    scan.first_index
                );
                return repair_or_fail(dir, config, &names, segments, problem(0, reason));
            }
        }

        let segment = Segment {
            first_index: scan.first_index,
            file,
            records: scan.records,
            write_end: scan.valid_end,
            dirty_from: None,
        };
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn {
                garbage_end,
                problem: record_problem,
            } if is_last => {
                tracing::warn!(
                    path = %name.path.display(),
                    offset = scan.valid_end,
                    dropped_bytes = garbage_end - scan.valid_end,
                    problem = %record_problem,
                    "cutting torn tail of the log"
                );
                segment::cut_segment(
                    segment.file.file(),
                    &name.path,
                    scan.valid_end,
                    segment.file.len(),
                )?;
            }
            Tail::Torn {
                problem: record_problem,
                ..
            } => {
                let reason = format!("{record_problem} in a segment that is not the last one");
                segments.push(segment);
                return repair_or_fail(
                    dir,
                    config,
                    &names,
                    segments,
                    problem(scan.valid_end, reason),
                );
            }
            Tail::Corrupt { offset, reason } => {
                segments.push(segment);
                return repair_or_fail(dir, config, &names, segments, problem(offset, reason));
            }
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Fails with the problem, or with `config.repair` truncates the log at it.
///
/// `segments` contains the segments before the problem, plus the damaged segment itself (cut back
/// to its valid records) when the problem is inside a record rather than in the header.
fn repair_or_fail<F: SegmentFile>(
    dir: &Path,
    config: &LogConfig,
    names: &[segment::SegmentName],
    mut segments: Vec<Segment<F>>,
    problem: RecoveryProblem,
) -> Result<Vec<Segment<F>>, StorageError> {
    if !config.repair {
        tracing::error!(path = %problem.path.display(), offset = problem.offset, reason = %problem.reason, "refusing to open corrupt log");
        return Err(StorageError::Corrupt {
            path: problem.path,
            offset: problem.offset,
            reason: problem.reason,
        });
    }

    tracing::warn!(
        path = %problem.path.display(),
        offset = problem.offset,
        reason = %problem.reason,
        "repair: truncating the log at corrupt data"
    );

    // Newest first, like truncate_suffix, so that a crash during repair leaves a prefix.
    let damaged_kept = segments.len() > problem.position;
    for name in names[problem.position + 1..].iter().rev() {
        segment::remove_segment(dir, &name.path)?;
    }
    if damaged_kept {
        let segment = segments.last_mut().expect("damaged segment was pushed");
        segment::cut_segment(
            segment.file.file(),
            &problem.path,
            segment.write_end,
            segment.file.len(),
        )?;
    } else {
        segment::remove_segment(dir, &problem.path)?;
    }
    Ok(segments)
}

/// Extends the last segment back to the configured size if a crash interrupted `cut_segment`
/// between its ftruncate and its preallocation.
fn restore_preallocation(path: &Path, segment_size: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io("open segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat segment", path, e))?
        .len();
    if len < segment_size {
        segment::preallocate(&file, path, segment_size)?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync segment", path, e))?;
        stats::count_metadata_sync();
    }
    Ok(())
}
