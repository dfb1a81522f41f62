//! The identity of a WAL — which cluster and node wrote it — and the `meta`
//! file that records it once, atomically, when the directory is initialized.
//!
//! Format (little-endian):
//!
//! ```text
//! | magic "BRWALMET" | version: u32 | node_id: u64 | cluster_id: u32 len + bytes |
//! | crc32c of everything before: u32 |
//! ```
//!
//! Segment headers repeat the identity, so a segment copied in from another
//! node's directory is refused too.

use std::path::Path;

use bedrock_raft::codec::{Reader, Writer};
use bedrock_raft::DecodeError;

use crate::durable::{self, Durability};
use crate::error::WalError;
use crate::vfs::Disk;

/// Name of the meta file inside the WAL directory.
pub(crate) const FILE_NAME: &str = "meta";

const MAGIC: &[u8; 8] = b"BRWALMET";
/// Version 2: segments of batches (see [`crate::record`]). A directory
/// written in version 1 is refused with a clear error.
const VERSION: u32 = 2;

/// Longest accepted cluster id, in bytes.
pub(crate) const MAX_CLUSTER_ID_LEN: usize = 256;

/// Who a WAL belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The cluster's id. Invariant: at most [`MAX_CLUSTER_ID_LEN`] bytes.
    pub(crate) cluster_id: String,
    /// This node's id within the cluster.
    pub(crate) node_id: u64,
}

impl Identity {
    /// Fails with [`WalError::Foreign`] unless `node` and `cluster`, read
    /// from `path`, are this identity.
    pub(crate) fn check(&self, path: &Path, node: u64, cluster: &[u8]) -> Result<(), WalError> {
        if cluster != self.cluster_id.as_bytes() {
            return Err(WalError::Foreign {
                path: path.to_path_buf(),
                what: "cluster",
                expected: self.cluster_id.clone(),
                found: String::from_utf8_lossy(cluster).into_owned(),
            });
        }
        if node != self.node_id {
            return Err(WalError::Foreign {
                path: path.to_path_buf(),
                what: "node",
                expected: self.node_id.to_string(),
                found: node.to_string(),
            });
        }
        Ok(())
    }

    /// Writes the meta file for a new WAL directory.
    pub(crate) fn create_file(
        &self,
        disk: &Disk,
        dir: &Path,
        durable: &mut Durability,
    ) -> Result<(), WalError> {
        let mut w = Writer::with_capacity(32 + self.cluster_id.len());
        w.put_raw(MAGIC);
        w.put_u32(VERSION);
        w.put_u64(self.node_id);
        w.put_bytes(self.cluster_id.as_bytes());
        let crc = crc32c::crc32c(w.as_slice());
        w.put_u32(crc);
        durable::replace_file(disk, dir, FILE_NAME, w.as_slice(), durable)?;
        Ok(())
    }

    /// Reads the meta file at `path` and checks it names this identity.
    pub(crate) fn check_file(&self, disk: &Disk, path: &Path) -> Result<(), WalError> {
        let buf = durable::read_file(disk, path)?;
        let bad = |reason: String| WalError::corrupt(path, 0, reason);
        let mut r = Reader::new(&buf);
        let parsed = (|| {
            let magic = r.get_raw(MAGIC.len(), "meta magic")?;
            let version = r.get_u32("meta version")?;
            let node = r.get_u64("meta node id")?;
            let cluster = r.get_bytes("meta cluster id")?;
            let body_len = r.position();
            let crc = r.get_u32("meta checksum")?;
            r.finish("meta")?;
            Ok((magic, version, node, cluster, body_len, crc))
        })();
        let (magic, version, node, cluster, body_len, crc) =
            parsed.map_err(|e: DecodeError| bad(format!("unreadable meta file: {e}")))?;
        if magic != MAGIC {
            return Err(bad("not a WAL meta file (bad magic)".into()));
        }
        if crc32c::crc32c(&buf[..body_len]) != crc {
            return Err(bad("meta file fails its checksum".into()));
        }
        if version != VERSION {
            return Err(bad(format!(
                "WAL format version {version} is not supported by this build (it reads version \
                 {VERSION} only; there is no migration: move the directory away to start afresh)"
            )));
        }
        self.check(path, node, cluster)
    }
}
