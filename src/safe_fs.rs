//! Files the service writes into folders other people (or an HRIS export
//! job) can write to: created new, never through a symbolic link planted
//! at their name, and put in place by a rename, which replaces a link
//! rather than writing to what it points at.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates `path` as a new regular file: fails if anything, a symbolic
/// link included (dangling or not), is already there.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens `path` for reading if it is a regular file, never following a
/// symbolic link (one swapped in after a check must not be read through).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO planted there must not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular(path),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

/// The error of [`open_regular`] for a link, a folder, a FIFO…
fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a regular file", path.display()),
    )
}

/// The hidden `.NAME.partial` beside `path` that a whole write goes to
/// first, created new; a stale one (a crash, or a planted link) is
/// removed first, never followed.
pub fn create_partial(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.partial"));
    match create_new(&partial) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&partial)?;
            Ok((partial.clone(), create_new(&partial)?))
        }
        other => other.map(|f| (partial, f)),
    }
}

/// Writes `contents` to `path` whole: through a new partial file, renamed
/// into place.
pub fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let (partial, mut file) = create_partial(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    match written {
        Ok(()) => std::fs::rename(&partial, path),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Refuses a folder that is a symbolic link (it could lead our writes
/// anywhere), then creates it when missing.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; refused", path.display()),
        )),
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a folder", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(path),
        Err(e) => Err(e),
    }
}

/// Whether anything, a dangling symbolic link included, is at `path`.
pub fn occupied(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "keep").unwrap();
        let planted = dir.path().join("report.csv");
        std::os::unix::fs::symlink(&precious, &planted).unwrap();

        assert!(create_new(&planted).is_err());
        let err = open_regular(&planted).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        // A planted partial too: removed, not written through.
        std::os::unix::fs::symlink(&precious, dir.path().join(".report.csv.partial")).unwrap();
        write_new(&planted, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&planted).unwrap();
        assert!(meta.is_file(), "the link itself was replaced");
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "new");

        let linked_dir = dir.path().join("done");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        assert!(ensure_dir(&linked_dir).is_err());
        ensure_dir(&dir.path().join("failed")).unwrap();
        assert!(occupied(&dir.path().join("failed")));
    }
}
