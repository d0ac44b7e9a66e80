//! `disk-probe`: the limits of the disk under a directory, measured the way the log uses it.
//!
//! Backend figures mean little without the disk's own: a log that syncs 700 times a second is
//! excellent on a disk that allows 750 and poor on one that allows 20,000. The probe measures
//! two limits on the same path the logs use:
//!
//! - **fdatasync rate for small writes**: sequential writes of `sync_write_size` bytes (4 KiB by
//!   default) into a preallocated file, each followed by fdatasync, through plain pwrite. This
//!   is what group commit with a batch of one costs at best, and what `fio --rw=write --bs=4k
//!   --ioengine=sync --fdatasync=1` measures.
//! - **Sequential O_DIRECT bandwidth**: writes of `direct_block_size` (1 MiB) with
//!   `direct_depth` (4) in flight through io_uring (glommio DMA file), into a preallocated
//!   file, and one fdatasync at the end, inside the timed span. Without that flush a disk with
//!   a volatile write cache reports the speed of its cache: on the reference machine, whose
//!   virtual disk has one, an unflushed run measured up to three times the flushed one. This
//!   is the ceiling for the `dma` backend's large appends, and what `fio --rw=write --bs=1M
//!   --direct=1 --ioengine=io_uring --iodepth=4 --end_fsync=1` measures.
//!
//! Both write into freshly preallocated (unwritten) extents, as a new log segment does, and
//! never wrap around to rewrite a block, which some file systems serve faster. Each part stops
//! at its time limit or at the end of its file, whichever comes first. The probe files are
//! removed afterwards, also after an error.
//!
//! Invariants: the probe only creates files named `.ringraft-probe-<pid>-*` in the directory
//! and removes them before returning. It must not run inside a glommio executor: it makes its
//! own for the O_DIRECT part.
//!
//! Not done yet: read bandwidth and fsync latency under concurrent writes are not probed.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;

use crate::dma::filesystem_type;
use crate::{check_backend_dir, segment, Backend, StorageError};

/// Settings of a probe run. `Default` gives the documented sizes and 3 s per part.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Time limit of each of the two parts.
    pub duration: Duration,
    /// Bytes per write of the fdatasync part.
    pub sync_write_size: usize,
    /// Size of the fdatasync part's file: the part stops early when it is full.
    pub sync_file_size: u64,
    /// Bytes per write of the O_DIRECT part, a multiple of 4 KiB.
    pub direct_block_size: usize,
    /// O_DIRECT writes kept in flight.
    pub direct_depth: usize,
    /// Size of the O_DIRECT part's file: the part stops early when it is full.
    pub direct_file_size: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            duration: Duration::from_secs(3),
            sync_write_size: 4096,
            sync_file_size: 64 << 20,
            direct_block_size: 1 << 20,
            direct_depth: 4,
            direct_file_size: 1 << 30,
        }
    }
}

impl ProbeConfig {
    fn validate(&self) -> Result<(), StorageError> {
        let invalid = |reason: String| Err(StorageError::InvalidConfig(reason));
        if self.duration.is_zero() {
            return invalid("probe duration is 0; give a positive duration such as 3s".into());
        }
        if self.sync_write_size == 0 || self.sync_file_size < self.sync_write_size as u64 {
            return invalid(format!(
                "sync write size {} and file size {} do not fit; the write size must be positive \
                 and at most the file size",
                self.sync_write_size, self.sync_file_size
            ));
        }
        if self.direct_block_size == 0
            || !self.direct_block_size.is_multiple_of(4096)
            || self.direct_depth == 0
            || self.direct_file_size < (self.direct_block_size * self.direct_depth) as u64
        {
            return invalid(format!(
                "O_DIRECT block size {}, depth {} and file size {} do not fit; the block size \
                 must be a positive multiple of 4096 and the file must hold depth blocks",
                self.direct_block_size, self.direct_depth, self.direct_file_size
            ));
        }
        Ok(())
    }
}

/// Result of the fdatasync part.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SyncProbe {
    pub write_size: usize,
    pub writes: u64,
    pub seconds: f64,
    /// Writes with their fdatasync per second.
    pub per_s: f64,
    /// Latency of write plus fdatasync, in microseconds.
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Result of the O_DIRECT part.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectProbe {
    pub block_size: usize,
    pub depth: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
}

/// Everything one probe run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbeReport {
    pub dir: PathBuf,
    pub fdatasync: SyncProbe,
    /// `None` when the file system has no O_DIRECT (tmpfs, for example). See `direct_skipped`.
    pub direct: Option<DirectProbe>,
    /// Reason the O_DIRECT part did not run.
    pub direct_skipped: Option<String>,
    /// A warning about what the figures mean, such as a directory that is not on a disk.
    pub warning: Option<String>,
}

impl ProbeReport {
    /// Renders the report as text for people, one line per part.
    pub fn render_text(&self) -> String {
        let sync = &self.fdatasync;
        let mut text = format!(
            "disk probe of {}\n  fdatasync after each {} B write: {:.0}/s ({} writes in {:.1} s; \
             latency mean {:.0} us, p50 {} us, p99 {} us, max {} us)\n",
            self.dir.display(),
            sync.write_size,
            sync.per_s,
            sync.writes,
            sync.seconds,
            sync.mean_us,
            sync.p50_us,
            sync.p99_us,
            sync.max_us
        );
        match &self.direct {
            Some(direct) => text.push_str(&format!(
                "  sequential O_DIRECT writes of {} KiB, {} in flight, flushed at the end: {:.0} MiB/s ({} MiB in {:.1} s)\n",
                direct.block_size / 1024,
                direct.depth,
                direct.mib_per_s,
                direct.bytes >> 20,
                direct.seconds
            )),
            None => text.push_str(&format!(
                "  sequential O_DIRECT writes: not measured: {}\n",
                self.direct_skipped.as_deref().unwrap_or("unknown reason")
            )),
        }
        if let Some(warning) = &self.warning {
            text.push_str(&format!("  warning: {warning}\n"));
        }
        text
    }
}

/// Removes a probe file when dropped, so that an error or a panic leaves nothing behind.
struct ProbeFile(PathBuf);

impl ProbeFile {
    fn new(dir: &Path, part: &str) -> ProbeFile {
        ProbeFile(dir.join(format!(".ringraft-probe-{}-{part}", std::process::id())))
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.0) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), %error, "failed to remove probe file");
            }
        }
    }
}

/// Runs both parts in `dir`, an existing directory, one after the other.
pub fn probe(dir: &Path, config: &ProbeConfig) -> Result<ProbeReport, StorageError> {
    config.validate()?;
    if !dir.is_dir() {
        return Err(StorageError::io(
            "probe",
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not an existing directory; create it or name another",
            ),
        ));
    }

    let fdatasync = probe_fdatasync(dir, config)?;

    // tmpfs is checked by type, because it accepts O_DIRECT opens and serves them from memory.
    let tmpfs = filesystem_type(dir)? == libc::TMPFS_MAGIC;
    let (direct, direct_skipped) = if tmpfs {
        (
            None,
            Some(format!(
                "{} is a tmpfs, which has no O_DIRECT",
                dir.display()
            )),
        )
    } else {
        match check_backend_dir(Backend::Dma, dir) {
            Ok(()) => (Some(probe_direct(dir, config)?), None),
            Err(StorageError::DirectIoUnsupported { source, .. }) => (
                None,
                Some(format!(
                    "the file system of {} does not support O_DIRECT ({source})",
                    dir.display()
                )),
            ),
            Err(error) => return Err(error),
        }
    };
    let warning = tmpfs.then(|| {
        format!(
            "{} is a tmpfs: it keeps files in memory, so these figures measure memory, not a disk",
            dir.display()
        )
    });
    Ok(ProbeReport {
        dir: dir.to_path_buf(),
        fdatasync,
        direct,
        direct_skipped,
        warning,
    })
}

fn probe_fdatasync(dir: &Path, config: &ProbeConfig) -> Result<SyncProbe, StorageError> {
    let probe_file = ProbeFile::new(dir, "fdatasync");
    let path = &probe_file.0;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StorageError::io("create probe file", path, e))?;
    segment::preallocate(&file, path, config.sync_file_size)?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync probe file", path, e))?;

    // Non-zero bytes, so that no layer can treat the writes as holes.
    let block = vec![0x5a_u8; config.sync_write_size];
    let mut latencies_us: Vec<u64> = Vec::new();
    let mut offset = 0u64;
    let started = Instant::now();
    while started.elapsed() < config.duration
        && offset + block.len() as u64 <= config.sync_file_size
    {
        let write_started = Instant::now();
        file.write_all_at(&block, offset)
            .map_err(|e| StorageError::io_at("write probe file", path, offset, e))?;
        file.sync_data()
            .map_err(|e| StorageError::io_at("fdatasync probe file", path, offset, e))?;
        latencies_us.push(write_started.elapsed().as_micros() as u64);
        offset += block.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();

    latencies_us.sort_unstable();
    let writes = latencies_us.len() as u64;
    let quantile = |q: f64| -> u64 {
        if latencies_us.is_empty() {
            return 0;
        }
        let rank = ((q * latencies_us.len() as f64).ceil() as usize).clamp(1, latencies_us.len());
        latencies_us[rank - 1]
    };
    let mean_us = if writes == 0 {
        0.0
    } else {
        latencies_us.iter().sum::<u64>() as f64 / writes as f64
    };
    Ok(SyncProbe {
        write_size: config.sync_write_size,
        writes,
        seconds,
        per_s: writes as f64 / seconds,
        mean_us,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
        max_us: latencies_us.last().copied().unwrap_or(0),
    })
}

fn probe_direct(dir: &Path, config: &ProbeConfig) -> Result<DirectProbe, StorageError> {
    let probe_file = ProbeFile::new(dir, "direct");
    let path = probe_file.0.clone();
    {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("create probe file", &path, e))?;
        segment::preallocate(&file, &path, config.direct_file_size)?;
        file.sync_all()
            .map_err(|e| StorageError::io("fsync probe file", &path, e))?;
    }

    // A one-hour preemption timer: the probe has a handful of tasks and nothing to be fair to,
    // and glommio 0.9 has been seen to park with runnable work when its timer fires.
    let config = config.clone();
    let executor = LocalExecutorBuilder::default()
        .name("disk-probe")
        .preempt_timer(Duration::from_secs(3600))
        .make()
        .map_err(|e| {
            StorageError::io(
                "start a glommio executor for",
                &path,
                std::io::Error::other(e.to_string()),
            )
        })?;
    executor.run(direct_writes(path, config))
}

async fn direct_writes(path: PathBuf, config: ProbeConfig) -> Result<DirectProbe, StorageError> {
    // Opened for reading too: glommio probes the device's polling support with a read.
    let file = glommio::io::OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&path)
        .await
        .map_err(|e| StorageError::io("open probe file with O_DIRECT", &path, e.into()))?;
    let file = Rc::new(file);
    let blocks = config.direct_file_size / config.direct_block_size as u64;
    let next_block = Rc::new(std::cell::Cell::new(0u64));
    let started = Instant::now();

    // `depth` writers take the next block number in turn, so `depth` writes are in flight and
    // the file is written front to back.
    let mut writers = Vec::with_capacity(config.direct_depth);
    for _ in 0..config.direct_depth {
        let file = file.clone();
        let next_block = next_block.clone();
        let path = path.clone();
        let block_size = config.direct_block_size;
        let duration = config.duration;
        writers.push(glommio::spawn_local(async move {
            let mut written = 0u64;
            while started.elapsed() < duration {
                let block = next_block.get();
                if block >= blocks {
                    break;
                }
                next_block.set(block + 1);
                let offset = block * block_size as u64;
                let mut buffer = file.alloc_dma_buffer(block_size);
                buffer.as_bytes_mut().fill(0x5a);
                let count = file.write_at(buffer, offset).await.map_err(|e| {
                    StorageError::io_at("write probe file with O_DIRECT", &path, offset, e.into())
                })?;
                written += count as u64;
            }
            Ok::<u64, StorageError>(written)
        }));
    }
    let mut bytes = 0;
    let mut first_error = None;
    for writer in writers {
        match writer.await {
            Ok(written) => bytes += written,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }

    // The flush belongs to the measurement: what sits in a volatile device cache is not
    // written yet.
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("fdatasync probe file", &path, e.into()))?;
    let seconds = started.elapsed().as_secs_f64();

    Ok(DirectProbe {
        block_size: config.direct_block_size,
        depth: config.direct_depth,
        bytes,
        seconds,
        mib_per_s: bytes as f64 / (1 << 20) as f64 / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ProbeConfig {
        ProbeConfig {
            duration: Duration::from_millis(200),
            sync_file_size: 64 * 4096,
            direct_file_size: 8 << 20,
            ..ProbeConfig::default()
        }
    }

    #[test]
    fn probe_measures_and_removes_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let report = probe(dir.path(), &small()).unwrap();

        assert!(report.fdatasync.writes > 0, "{report:?}");
        assert!(report.fdatasync.writes <= 64);
        assert!(report.fdatasync.p50_us <= report.fdatasync.max_us);
        match (&report.direct, &report.direct_skipped) {
            (Some(direct), None) => {
                assert!(direct.bytes > 0, "{direct:?}");
                assert!(direct.bytes <= 8 << 20, "{direct:?}");
                assert_eq!(direct.bytes % (1 << 20), 0);
            }
            // The system temporary directory may be a tmpfs, and then the reason must name O_DIRECT.
            (None, Some(reason)) => assert!(reason.contains("O_DIRECT"), "{reason}"),
            other => panic!("exactly one of direct and direct_skipped expected: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "probe files left behind: {left:?}");
    }

    #[test]
    fn probe_rejects_a_missing_directory_and_bad_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = probe(&missing, &small()).unwrap_err().to_string();
        assert!(error.contains("nope"), "{error}");

        let bad = ProbeConfig {
            direct_block_size: 1000,
            ..small()
        };
        let error = probe(dir.path(), &bad).unwrap_err().to_string();
        assert!(error.contains("1000"), "{error}");
    }
}
