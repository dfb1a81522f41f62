//! What an existing WAL directory holds, before any file is read.

use std::path::Path;

use crate::durable::{self, Durability};
use crate::error::WalError;
use crate::vfs::{Disk, Vfs, LOCK_FILE_NAME};
use crate::{hard_state, meta, segment, snapshot_file};

/// The classified contents of a WAL directory.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The meta file exists.
    pub(crate) has_meta: bool,
    /// The hard state file exists.
    pub(crate) has_hard_state: bool,
    /// The snapshot file exists.
    pub(crate) has_snapshot: bool,
    /// First indexes of the segment files, sorted.
    pub(crate) segments: Vec<u64>,
}

impl Listing {
    /// Lists `dir`, removing leftover `.tmp` files and refusing anything unknown.
    pub(crate) fn read(
        disk: &Disk,
        dir: &Path,
        durable: &mut Durability,
    ) -> Result<Listing, WalError> {
        let mut listing = Listing::default();
        let mut removed_tmp = false;
        let entries = disk
            .read_dir(dir)
            .map_err(|e| WalError::io("list directory", dir, e))?;
        for entry in entries {
            let path = dir.join(&entry.name);
            if !entry.is_file {
                return Err(WalError::corrupt(
                    path,
                    0,
                    "unexpected non-file entry in the WAL directory",
                ));
            }
            let name = entry.name.as_str();
            match name {
                LOCK_FILE_NAME => {}
                meta::FILE_NAME => listing.has_meta = true,
                hard_state::FILE_NAME => listing.has_hard_state = true,
                snapshot_file::FILE_NAME => listing.has_snapshot = true,
                _ if name.ends_with(".tmp") => {
                    durable::remove_file(disk, &path)?;
                    removed_tmp = true;
                }
                _ => match segment::parse_file_name(name) {
                    Some(first) => listing.segments.push(first),
                    None => {
                        return Err(WalError::corrupt(
                            path,
                            0,
                            "unexpected file in the WAL directory",
                        ))
                    }
                },
            }
        }
        if removed_tmp {
            durable.sync_dir(disk, dir)?;
        }
        listing.segments.sort_unstable();
        Ok(listing)
    }

    /// True when no WAL file is present.
    pub(crate) fn is_empty(&self) -> bool {
        !self.has_meta && !self.has_hard_state && !self.has_snapshot && self.segments.is_empty()
    }
}
