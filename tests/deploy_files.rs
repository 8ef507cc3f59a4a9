//! The deployment files users copy, checked in one test binary (each file
//! in tests/ is a binary of its own that links the crate): see
//! tests/deploy/ for one module per kind of file.

mod common;
mod deploy;
