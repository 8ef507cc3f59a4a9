//! The `--web.config.file`, in the format of Prometheus' exporter-toolkit.

#![forbid(unsafe_code)]

mod file;
pub(crate) mod login;
mod reload;
mod tls;

pub(crate) use file::{RateLimit, WebConfig};
pub(crate) use reload::WebConfigState;
