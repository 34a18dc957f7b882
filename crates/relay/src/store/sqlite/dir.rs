use crate::store::error::StoreError;
use std::path::Path;

/// The store's file name in the data directory.
pub const DB_FILE: &str = "events.db";

pub(super) fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// Takes the data directory's lock file (`relay.lock`), so two relays never deliver from one
/// store and nothing moves the store while a relay runs on it. Held while the file is open.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    prepare_data_dir(dir)?;
    let path = dir.join("relay.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| unavailable(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(unavailable(&path, format!("cannot lock: {e}")))
        }
    }
}

/// Makes the data directory private when the relay creates it (tokens sent with requests wait
/// there), and refuses one that every user may write to. A folder that already exists keeps its
/// permissions: pointing `--data` at a shared folder must not lock its other users out.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir)
                .map_err(|e| unavailable(dir, e))?
                .permissions()
                .mode();
            if mode & 0o002 != 0 {
                return Err(unavailable(
                    dir,
                    format!("the data directory is writable by every user (mode {:o}); give the relay a folder of its own (a new --data, or chmod o-w)", mode & 0o7777),
                ));
            }
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| unavailable(dir, format!("cannot create the data directory: {e}")))
}
