//! Byte-level access to one segment file, one implementation per disk backend.
//!
//! The segmented log (`disk`) decides what goes where; this module only moves bytes. The trait
//! is asynchronous for the io_uring implementation in `dma`. The two implementations here issue
//! their system calls inline and never suspend: see `disk` for why blocking the calling
//! executor during a sync is acceptable.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::segment::{scan_segment, SegmentScan};
use crate::StorageError;

/// Positioned reads, writes and syncs on one open segment file.
pub(crate) trait SegmentFile: Sized {
    /// Checks, before anything is created in `dir`, that its file system supports this kind of
    /// segment file.
    fn check_dir(_dir: &Path) -> Result<(), StorageError> {
        Ok(())
    }

    /// Opens an existing segment for reading and writing.
    async fn open(path: &Path) -> Result<Self, StorageError>;

    /// Underlying file, used for truncation and preallocation.
    fn file(&self) -> &File;

    /// Path of the file, for error messages.
    fn path(&self) -> &Path;

    /// Length of the file when it was opened; records never go past it.
    fn len(&self) -> u64;

    /// Scans the whole file for records (see `segment::scan_segment`). The inner `Err` is an
    /// invalid segment header.
    async fn scan(&self) -> Result<Result<SegmentScan, String>, StorageError>;

    /// Returns `len` bytes starting at `offset`.
    async fn read_span(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, StorageError>;

    /// Writes `data` at `offset`.
    async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;

    /// Makes the bytes in `offset..offset + len` durable.
    async fn sync_range(&mut self, offset: u64, len: u64) -> Result<(), StorageError>;
}

pub(crate) fn open_read_write(path: &Path) -> Result<(File, u64), StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io("open segment", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("stat segment", path, e))?
        .len();
    Ok((file, len))
}

pub(crate) fn out_of_bounds(path: &Path, offset: u64, len: usize, file_len: u64) -> StorageError {
    StorageError::io_at(
        "write segment",
        path,
        offset,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len}-byte write would end past the {file_len}-byte segment"),
        ),
    )
}

/// Segment written through a shared, writable memory map.
///
/// The whole file is mapped once at its preallocated length. Appends are memory copies and
/// syncs are msync(MS_SYNC) over the dirty range, which Linux implements as a ranged
/// fdatasync.
pub(crate) struct MmapSegment {
    file: File,
    path: PathBuf,
    map: MmapMut,
}

impl MmapSegment {
    /// Fails unless the file is still at least `end` bytes long, so that reading the mapping up
    /// to `end` cannot raise SIGBUS.
    ///
    /// NOTE: another process could still truncate the file between this check and the read.
    /// Closing that window would need a SIGBUS handler; the directory lock keeps other ringraft
    /// processes from writing here, which leaves only outside tools.
    fn check_file_len(&self, offset: u64, end: u64) -> Result<(), StorageError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", &self.path, e))?
            .len();
        if len < end {
            return Err(StorageError::SegmentTruncated {
                path: self.path.clone(),
                len,
                offset,
                needed: end - offset,
            });
        }
        Ok(())
    }
}

impl SegmentFile for MmapSegment {
    async fn open(path: &Path) -> Result<Self, StorageError> {
        let (file, _len) = open_read_write(path)?;

        // SAFETY: the mapping covers exactly the file's length at this moment. This process
        // holds the directory lock, so no other ringraft process writes or truncates the file.
        // The only truncation this process makes (`cut_segment`) is followed by preallocation
        // back to the same length before the mapping is touched again. Every read first checks
        // the current file length (`check_file_len`).
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| StorageError::io("mmap segment", path, e))?;
        Ok(MmapSegment {
            file,
            path: path.to_path_buf(),
            map,
        })
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    async fn scan(&self) -> Result<Result<SegmentScan, String>, StorageError> {
        self.check_file_len(0, self.map.len() as u64)?;
        Ok(scan_segment(&self.map))
    }

    async fn read_span(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, StorageError> {
        let end = offset + len as u64;
        self.check_file_len(offset, end)?;
        if end > self.map.len() as u64 {
            return Err(StorageError::SegmentTruncated {
                path: self.path.clone(),
                len: self.map.len() as u64,
                offset,
                needed: len as u64,
            });
        }
        Ok(Cow::Borrowed(&self.map[offset as usize..end as usize]))
    }

    async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let end = offset as usize + data.len();
        if end > self.map.len() {
            return Err(out_of_bounds(&self.path, offset, data.len(), self.len()));
        }
        self.map[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    async fn sync_range(&mut self, offset: u64, len: u64) -> Result<(), StorageError> {
        self.map
            .flush_range(offset as usize, len as usize)
            .map_err(|e| StorageError::io_at("msync segment", &self.path, offset, e))
    }
}

/// Segment written with pwrite through the page cache and synced with fdatasync.
pub(crate) struct FileSegment {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SegmentFile for FileSegment {
    async fn open(path: &Path) -> Result<Self, StorageError> {
        let (file, len) = open_read_write(path)?;
        Ok(FileSegment {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// Scans through a temporary read-only mapping. Copying each 32 MiB segment, most of it
    /// preallocated zeros, into a buffer made the `recovery` bench about five times slower.
    /// Writes and reads after open still go through pwrite and pread.
    async fn scan(&self) -> Result<Result<SegmentScan, String>, StorageError> {
        // SAFETY: the same argument as `MmapSegment::open`: this process holds the directory
        // lock, nothing truncates the file while the mapping lives (it is dropped at the end of
        // this function), and the mapping covers the file length read just before.
        let map = unsafe { Mmap::map(&self.file) }
            .map_err(|e| StorageError::io("mmap segment for recovery", &self.path, e))?;
        Ok(scan_segment(&map))
    }

    async fn read_span(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, StorageError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StorageError::SegmentTruncated {
                    path: self.path.clone(),
                    len: self.file.metadata().map_or(0, |m| m.len()),
                    offset,
                    needed: len as u64,
                }
            } else {
                StorageError::io_at("read segment", &self.path, offset, e)
            }
        })?;
        Ok(Cow::Owned(buf))
    }

    async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset + data.len() as u64 > self.len {
            return Err(out_of_bounds(&self.path, offset, data.len(), self.len));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| StorageError::io_at("write segment", &self.path, offset, e))
    }

    async fn sync_range(&mut self, offset: u64, _len: u64) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io_at("fdatasync segment", &self.path, offset, e))
    }
}
