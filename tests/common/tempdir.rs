//! Temporary directories that are removed when the test ends, passing or
//! failing (a panic unwinds through `Drop`): `tempfile`'s, with the
//! writes the tests make in them.

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory,
/// removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    dir: tempfile::TempDir,
}

impl TempDir {
    /// Creates `synack-test-<name>-<random>`, unique per call.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("synack-test-{name}-"))
            .tempdir()
            .unwrap_or_else(|error| panic!("create a temporary directory for {name}: {error}"));
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path().join(name)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }

    /// Writes an executable script `name` with `body` after a `#!/bin/sh`
    /// line and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.write(name, &format!("#!/bin/sh\n{body}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
        path
    }

    /// Gives up the guard: the directory stays, and whoever holds the path
    /// removes it.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}
