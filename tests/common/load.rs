//! The integration tests of every area share one binary, which runs them
//! two at a time. Some load both cores for seconds (floods, reload
//! storms, a thousand clients) and some check deadlines that such load
//! would break: this lock keeps the two kinds apart, as their own
//! binaries did, and lets the rest run beside either.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOAD: RwLock<()> = RwLock::const_new(());

/// For a test that loads both cores for seconds, or that bounds a
/// latency under load of its own making: it runs beside no other such
/// test and no [`timed`] one.
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

/// For a light test that checks its probes against short deadlines: it
/// runs beside other light tests, never beside a [`heavy`] one.
pub async fn timed() -> RwLockReadGuard<'static, ()> {
    LOAD.read().await
}
