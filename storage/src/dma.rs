//! Segment files written with O_DIRECT through io_uring: the `dma` backend.
//!
//! Each segment is a glommio `DmaFile`, so writes, reads and fdatasync are io_uring requests and
//! the executor keeps running other tasks while they are in flight. The byte layout is the same
//! as for the other backends, so any backend opens a directory written by any other.
//!
//! O_DIRECT transfers whole, aligned blocks. Records are not padded to blocks. The segment
//! keeps a copy of the partly filled block at its write end, and an append writes that block
//! again with the new records after the old bytes. The old bytes are written unchanged, so a
//! write torn at any sector leaves every previously synced record intact.
//!
//! Writes start and end on the file system's block size (`st_blksize`, 4 KiB on ext4 and XFS),
//! not only on the device's logical block size that O_DIRECT requires (`DmaFile::alignment`,
//! often 512 bytes). On ext4, writes into preallocated space that do not start and end on
//! block boundaries are much slower. Measured with fio 3.33 on Linux 6.18 (ext4 on a virtio
//! disk), 4 MiB writes that started 512 bytes into a block ran at 72 to 134 MiB/s. The same
//! writes started on a block ran at 273 to 629 MiB/s. See `write_alignment` for the bounds.
//! The cost is at low rates: a commit of one small entry writes a whole file system block,
//! 4 KiB where 512 bytes would do, as many bytes as the page-cache backends write for it.
//!
//! An append is one write, whatever its size. The kernel splits a large O_DIRECT write into
//! several block requests and submits them all before it waits, so one write already keeps
//! the device busy. Splitting it here into 1 MiB writes with four in flight measured no faster
//! (372 against 357 to 390 MiB/s on the `append/dma/16384B/batch256` bench row), and parts of
//! one append could then complete out of order.
//!
//! Invariants:
//! - Opening checks that the directory's file system performs O_DIRECT I/O and fails with
//!   `StorageError::DirectIoUnsupported` otherwise (see `check_direct_io`). glommio itself
//!   would fall back to buffered I/O on tmpfs, which would make this backend's figures
//!   meaningless.
//! - Everything runs on the glommio executor of the calling thread. Using a `dma` log outside
//!   an executor panics inside glommio.
//! - A segment whose size is not a multiple of the write alignment grows to the next multiple
//!   when its last block is written. The extra bytes are zeros, which every backend reads as
//!   unwritten space.
//!
//! Not done yet: appends copy the encoded batch once more into a DMA buffer. Encoding straight
//! into that buffer would save the copy but needs a change of the `SegmentFile` interface. In a
//! profiled bench run the copy took an estimated 0.5 ms per 4 MiB append, about 5% of the
//! append at 400 MiB/s. The buffer comes from glommio's registered I/O memory when the batch
//! fits there (10 MiB per executor by default) and from the heap otherwise.

use std::borrow::Cow;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, DmaStreamReaderBuilder};

use crate::disk::LOCK_FILE_NAME;
use crate::io::{open_read_write, out_of_bounds, SegmentFile};
use crate::segment::{scan_segment, SegmentScan};
use crate::StorageError;

/// Size of each read of a recovery scan. A power of two, as glommio's stream reader requires.
const SCAN_BUFFER_SIZE: usize = 1 << 20;
/// Number of scan reads kept in flight ahead of the one being consumed.
const SCAN_READ_AHEAD: usize = 4;

/// Segment file written with O_DIRECT through io_uring.
pub(crate) struct DmaSegment {
    dma: Rc<DmaFile>,
    /// The same file opened without O_DIRECT, for ftruncate and fallocate in `cut_segment`.
    file: File,
    path: PathBuf,
    len: u64,
    /// Alignment of the start and length of every write, in bytes (see `write_alignment`).
    write_block: u64,
    /// Copy of the bytes between the start of the block at the write end and the write end,
    /// or `None` until the first write.
    tail: Option<TailBlock>,
}

struct TailBlock {
    /// File offset of the block, a multiple of `DmaSegment::write_block`.
    start: u64,
    /// Bytes from `start` up to the end of the last write; always shorter than one block.
    bytes: Vec<u8>,
}

impl DmaSegment {
    /// Returns the bytes from the start of the block containing `offset` up to `offset`, from
    /// the cached tail block when it covers them and from the file otherwise. After a write,
    /// the cache always covers the next write; reading is needed after open and after a cut.
    async fn block_prefix(&mut self, offset: u64) -> Result<Vec<u8>, StorageError> {
        let start = offset - offset % self.write_block;
        let needed = (offset - start) as usize;
        if let Some(tail) = &self.tail {
            if tail.start == start && tail.bytes.len() >= needed {
                return Ok(tail.bytes[..needed].to_vec());
            }
        }
        if needed == 0 {
            return Ok(Vec::new());
        }

        let block = self
            .dma
            .read_at_aligned(start, self.write_block as usize)
            .await
            .map_err(|e| StorageError::io_at("read segment block", &self.path, start, e.into()))?;
        if block.len() < needed {
            return Err(StorageError::SegmentTruncated {
                path: self.path.clone(),
                len: start + block.len() as u64,
                offset: start,
                needed: needed as u64,
            });
        }
        Ok(block[..needed].to_vec())
    }
}

/// Largest write alignment. Every append rewrites the partly filled block at the write end, so
/// a large alignment makes small appends write much more than they add.
const MAX_WRITE_BLOCK: u64 = 64 * 1024;

/// Returns the alignment of writes for a file whose device needs `dma_alignment` for O_DIRECT
/// and whose file system reports `block_size` as `st_blksize`.
///
/// The result is `block_size` clamped to `dma_alignment..=MAX_WRITE_BLOCK`, or `dma_alignment`
/// when `block_size` is not a power of two. Either way it is a power of two and a multiple of
/// `dma_alignment`, which glommio guarantees to be a power of two of at least 512.
///
/// NOTE: file systems that report an `st_blksize` above 64 KiB get 64 KiB writes. ZFS reports
/// its record size there and NFS its transfer size, and neither was measured.
fn write_alignment(dma_alignment: u64, block_size: u64) -> u64 {
    if !block_size.is_power_of_two() {
        return dma_alignment;
    }
    block_size.clamp(dma_alignment, MAX_WRITE_BLOCK.max(dma_alignment))
}

/// Checks that the file system of `dir` performs O_DIRECT I/O, by its type and by opening
/// `LOCK` with O_DIRECT.
///
/// tmpfs accepts O_DIRECT opens on recent kernels (seen on Linux 6.18) but serves them from the
/// page cache, and glommio 0.9 then disables direct I/O for the file without an error, so tmpfs
/// is rejected by type. Other file systems without support (ramfs, some overlay setups) fail
/// the open.
fn check_direct_io(dir: &Path) -> Result<(), StorageError> {
    let unsupported = |source: io::Error| {
        tracing::debug!(dir = %dir.display(), error = %source, "file system has no O_DIRECT support");
        StorageError::DirectIoUnsupported {
            path: dir.to_path_buf(),
            source,
        }
    };

    if filesystem_type(dir)? == libc::TMPFS_MAGIC {
        return Err(unsupported(io::Error::other(
            "it is a tmpfs, which serves O_DIRECT from the page cache",
        )));
    }

    let probe = dir.join(LOCK_FILE_NAME);
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
    {
        Ok(_) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Err(unsupported(error)),
        Err(error) => Err(StorageError::io("open with O_DIRECT", probe, error)),
    }
}

/// Returns the `f_type` magic number that statfs(2) reports for `path`.
pub(crate) fn filesystem_type(path: &Path) -> Result<libc::c_long, StorageError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StorageError::io(
            "statfs",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })?;
    let mut stats = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated string that lives across the call, and `stats`
    // points to writable memory of the size of `struct statfs`, which the call fills.
    let code = unsafe { libc::statfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if code != 0 {
        return Err(StorageError::io("statfs", path, io::Error::last_os_error()));
    }
    // SAFETY: statfs returned 0, so it initialized the whole structure.
    let stats = unsafe { stats.assume_init() };
    Ok(stats.f_type)
}

impl SegmentFile for DmaSegment {
    fn check_dir(dir: &Path) -> Result<(), StorageError> {
        check_direct_io(dir)
    }

    async fn open(path: &Path) -> Result<Self, StorageError> {
        let (file, len) = open_read_write(path)?;
        let dma = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(|e| StorageError::io("open segment with O_DIRECT", path, e.into()))?;
        let block_size = file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", path, e))?
            .blksize();
        let write_block = write_alignment(dma.alignment(), block_size);
        Ok(DmaSegment {
            dma: Rc::new(dma),
            file,
            path: path.to_path_buf(),
            len,
            write_block,
            tail: None,
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

    /// Reads the whole file with sequential 1 MiB reads, four of them in flight ahead of the
    /// one being copied, and scans the copy.
    async fn scan(&self) -> Result<Result<SegmentScan, String>, StorageError> {
        let file_len = self
            .file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", &self.path, e))?
            .len();
        let mut reader = DmaStreamReaderBuilder::from_rc(self.dma.clone())
            .with_buffer_size(SCAN_BUFFER_SIZE)
            .with_read_ahead(SCAN_READ_AHEAD)
            .with_end_pos(file_len)
            .build();

        let mut data = Vec::with_capacity(file_len as usize);
        let result = loop {
            if data.len() as u64 >= file_len {
                break Ok(());
            }
            match reader.get_buffer_aligned(SCAN_BUFFER_SIZE as u64).await {
                Ok(chunk) if chunk.is_empty() => break Ok(()),
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(e) => {
                    let offset = data.len() as u64;
                    break Err(StorageError::io_at(
                        "read segment for recovery",
                        &self.path,
                        offset,
                        e.into(),
                    ));
                }
            }
        };
        // Closing the reader drops its reference to the shared file; the segment keeps its own.
        let closed = reader.close().await;
        result?;
        closed.map_err(|e| StorageError::io("close segment reader", &self.path, e.into()))?;

        if (data.len() as u64) < file_len {
            return Err(StorageError::SegmentTruncated {
                path: self.path.clone(),
                len: data.len() as u64,
                offset: 0,
                needed: file_len,
            });
        }
        Ok(scan_segment(&data))
    }

    async fn read_span(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>, StorageError> {
        // Aligned by hand rather than with `DmaFile::read_at`, so that a short read at the end
        // of a truncated file is detected from the byte count the kernel returned.
        let start = self.dma.align_down(offset);
        let lead = (offset - start) as usize;
        let end = self.dma.align_up(offset + len as u64);
        let read = self
            .dma
            .read_at_aligned(start, (end - start) as usize)
            .await
            .map_err(|e| StorageError::io_at("read segment", &self.path, offset, e.into()))?;
        if read.len() < lead + len {
            return Err(StorageError::SegmentTruncated {
                path: self.path.clone(),
                len: self.file.metadata().map_or(0, |m| m.len()),
                offset,
                needed: len as u64,
            });
        }
        Ok(Cow::Owned(read[lead..lead + len].to_vec()))
    }

    async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset + data.len() as u64 > self.len {
            return Err(out_of_bounds(&self.path, offset, data.len(), self.len));
        }

        // Assemble whole blocks: the bytes already in the first block, the new data, zeros.
        let prefix = self.block_prefix(offset).await?;
        let start = offset - prefix.len() as u64;
        let end = offset + data.len() as u64;
        let padded_len = (end.next_multiple_of(self.write_block) - start) as usize;
        let mut buffer = self.dma.alloc_dma_buffer(padded_len);
        let bytes = buffer.as_bytes_mut();
        bytes[..prefix.len()].copy_from_slice(&prefix);
        bytes[prefix.len()..prefix.len() + data.len()].copy_from_slice(data);
        bytes[prefix.len() + data.len()..].fill(0);

        // Keep the partly filled last block for the next append.
        let tail_start = end - end % self.write_block;
        let tail_bytes = bytes[(tail_start - start) as usize..(end - start) as usize].to_vec();

        // The tail is dropped first, so that a failed write leaves no stale copy behind. The
        // log is poisoned after a failed write anyway.
        self.tail = None;
        let written = self
            .dma
            .write_at(buffer, start)
            .await
            .map_err(|e| StorageError::io_at("write segment", &self.path, start, e.into()))?;
        if written < padded_len {
            // NOTE: a short O_DIRECT write (a full disk, usually) is not retried. The caller
            // poisons the log, and recovery on the next open finds what reached the disk.
            return Err(StorageError::io_at(
                "write segment",
                &self.path,
                start + written as u64,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("wrote {written} of {padded_len} bytes"),
                ),
            ));
        }
        self.tail = Some(TailBlock {
            start: tail_start,
            bytes: tail_bytes,
        });
        Ok(())
    }

    async fn sync_range(&mut self, offset: u64, _len: u64) -> Result<(), StorageError> {
        self.dma
            .fdatasync()
            .await
            .map_err(|e| StorageError::io_at("fdatasync segment", &self.path, offset, e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_alignment_follows_block_size() {
        assert_eq!(write_alignment(512, 4096), 4096);
        assert_eq!(write_alignment(4096, 4096), 4096);
        assert_eq!(write_alignment(512, 1024), 1024);
    }

    #[test]
    fn write_alignment_stays_within_bounds() {
        assert_eq!(
            write_alignment(4096, 1024),
            4096,
            "below the O_DIRECT alignment"
        );
        assert_eq!(
            write_alignment(512, 1 << 20),
            MAX_WRITE_BLOCK,
            "above the maximum"
        );
        assert_eq!(
            write_alignment(2 * MAX_WRITE_BLOCK, 4096),
            2 * MAX_WRITE_BLOCK,
            "O_DIRECT alignment above the maximum"
        );
    }

    #[test]
    fn write_alignment_ignores_odd_block_size() {
        assert_eq!(write_alignment(512, 0), 512);
        assert_eq!(write_alignment(512, 3000), 512);
        assert_eq!(write_alignment(4096, 12288), 4096);
    }
}
