//! `--web.config.file`: TLS, client certificates, basic auth, extra
//! response headers and a rate limit, in the format of Prometheus'
//! exporter-toolkit (`docs/web-configuration.md`), so that the file a
//! site already has for its other exporters works here too.
//!
//! - [`file`](mod@file): the file's format, read and checked into a [`WebConfig`].
//! - [`tls`]: its `tls_server_config`, made into a rustls server config.
//! - [`gate`]: what every request passes, the rate limit then basic auth:
//!   let through, or a [`Refusal`].
//! - [`login`]: the basic-auth check, with the CPU that failed logins take
//!   bounded.
//! - [`token_bucket`]: the rate limit's bucket.
//! - [`reload`]: the web config in force, and its reloads when a file
//!   changes or on SIGHUP; `config::stamp` tells when one changed.
//!
//! This layer decides; serving is the HTTP layer's job: the TLS
//! handshake, and the refusals as responses.

#![forbid(unsafe_code)]

mod file;
mod gate;
mod login;
mod reload;
mod tls;
mod token_bucket;

pub(crate) use file::{RateLimit, WebConfig};
pub(crate) use gate::{Gate, Refusal};
pub(crate) use reload::WebConfigState;
pub(crate) use token_bucket::TokenBucket;
