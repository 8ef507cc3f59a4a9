//! What tells that a file changed, and reads that miss no change: the
//! web config's files, and those a module's `tls_config` names
//! (`prober::tls`), are stamped before they are read, so that a
//! certificate rotated during a read is read again at the next look.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What tells that a file changed: its modification time, size, device
/// and inode (a rename over it, as Kubernetes and certbot do, changes the
/// inode even when the time is the same); `None` for a file that cannot
/// be read. One `stat`, no read.
pub(crate) type Stamp = Option<FileStamp>;

/// A file's identity and version, as [`Stamp`] takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: SystemTime,
    size: u64,
    device: u64,
    inode: u64,
}

/// The stamp of the file at `path` now.
pub(crate) fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok()?,
        size: metadata.len(),
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

/// Reads with `load`, which returns what it read (a config, a TLS setup)
/// and the files it read (a config's own file first), and the stamps of
/// those files taken
/// **before** the read: a file replaced during the read (a certificate
/// rotated between the read of the config file and the read of the
/// key) then differs from its stamp, and the next poll reads it again.
/// A stamp taken after the read would record the new file as seen while
/// the old one stays in force.
///
/// Which files a config names is known only once it is read, so
/// `expected` (the files of the config in force, or just the config's
/// own file at start-up) are stamped first; if the read names others, it
/// is done once more with those stamped too. A file still not stamped
/// before a read gets no stamp (`None`), which the next poll sees as a
/// change: at worst one read too many, never a change missed.
pub(crate) fn read_stamped<T, E>(
    expected: &[PathBuf],
    mut load: impl FnMut() -> Result<(T, Vec<PathBuf>), E>,
) -> Result<(T, Vec<Stamp>), E> {
    let mut before: Vec<(PathBuf, Stamp)> = expected
        .iter()
        .map(|file| (file.clone(), stamp(file)))
        .collect();
    let mut tries = 0;
    loop {
        tries += 1;
        let (config, watched) = load()?;
        let stamped: Vec<Option<Stamp>> = watched
            .iter()
            .map(|file| {
                before
                    .iter()
                    .find(|(seen, _)| seen == file)
                    .map(|(_, stamp)| *stamp)
            })
            .collect();
        if tries >= 2 || stamped.iter().all(Option::is_some) {
            return Ok((config, stamped.into_iter().map(Option::flatten).collect()));
        }
        before = watched
            .iter()
            .map(|file| (file.clone(), stamp(file)))
            .collect();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A web config naming `field: name`, and that file holding
    /// `contents`, in a directory of their own: the directory, the
    /// config's path and the file's.
    fn web_config_and(
        field: &str,
        name: &str,
        contents: &str,
    ) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (web, file) = (dir.path().join("web.yml"), dir.path().join(name));
        std::fs::write(&web, format!("{field}: {name}\n")).unwrap();
        std::fs::write(&file, contents).unwrap();
        (dir, web, file)
    }

    /// Replaces `path` as certificate managers do: written aside, renamed over.
    pub(crate) fn rotate(path: &Path, contents: &str) {
        let aside = path.with_extension("new");
        std::fs::write(&aside, contents).unwrap();
        std::fs::rename(&aside, path).unwrap();
    }

    /// The review's race: the key is rotated after the read, before the
    /// stamps are taken. Stamps taken before the read see it as changed.
    #[test]
    fn a_file_rotated_during_the_read_is_seen_as_changed() {
        let (_dir, web, key) = web_config_and("key_file", "server.key", "old key");
        let watched = vec![web.clone(), key.clone()];
        // At start-up only the config file is known before the read; on a
        // reload, every file of the config in force is.
        for expected in [vec![web.clone()], watched.clone()] {
            let mut rotations = 0;
            let (read, stamps) = read_stamped(&expected, || {
                let read = std::fs::read_to_string(&key)?;
                // Rotated once this read is done, before anyone stamps it.
                rotations += 1;
                rotate(&key, &format!("key {rotations}"));
                Ok::<_, std::io::Error>((read, watched.clone()))
            })
            .unwrap();
            assert_ne!(
                read,
                std::fs::read_to_string(&key).unwrap(),
                "the key in force is not the one on disk"
            );
            assert_eq!(stamps.len(), 2);
            assert_eq!(stamps[0], stamp(&web), "the config file did not change");
            assert_ne!(
                stamps[1],
                stamp(&key),
                "with {expected:?} stamped first, the rotated key counts as seen"
            );
        }
    }

    #[test]
    fn files_not_rotated_are_not_seen_as_changed_and_a_new_file_is_read_twice() {
        let (_dir, web, cert) = web_config_and("cert_file", "server.crt", "cert");
        let mut reads = 0;
        let (_, stamps) = read_stamped(std::slice::from_ref(&web), || {
            reads += 1;
            Ok::<_, std::io::Error>(((), vec![web.clone(), cert.clone()]))
        })
        .unwrap();
        assert_eq!(
            reads, 2,
            "the certificate was not known before the first read"
        );
        assert_eq!(stamps, vec![stamp(&web), stamp(&cert)]);
        assert!(stamps.iter().all(Option::is_some));
    }
}
