//! The step-by-step log behind `/probe?debug=true`.
//!
//! A probe writes what it does into a [`Trace`]. For ordinary requests the
//! trace is disabled and `log` returns before formatting anything, so the
//! hot path pays one branch per step and allocates nothing.

use std::fmt::{self, Write as _};
use std::time::Instant;

/// A probe's log of its steps, or nothing when disabled.
#[derive(Debug)]
pub struct Trace {
    started: Instant,
    text: Option<String>,
}

impl Trace {
    /// A trace that records nothing.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            started: Instant::now(),
            text: None,
        }
    }

    /// A trace that records every step with its time since creation.
    #[must_use]
    pub fn enabled() -> Self {
        Self {
            started: Instant::now(),
            text: Some(String::new()),
        }
    }

    /// Whether steps are being recorded.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.text.is_some()
    }

    /// Records one step, prefixed with the elapsed time.
    pub fn log(&mut self, step: fmt::Arguments<'_>) {
        if let Some(text) = &mut self.text {
            let elapsed = self.started.elapsed().as_secs_f64();
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{elapsed:.6}s {step}");
        }
    }

    /// A trace for steps taken in another task, with the same start, so
    /// that [`join`](Self::join) can add them in place. Disabled if this
    /// one is.
    #[must_use]
    pub fn fork(&self) -> Self {
        Self {
            started: self.started,
            text: self.text.as_ref().map(|_| String::new()),
        }
    }

    /// Adds the steps of a trace made with [`fork`](Self::fork).
    pub fn join(&mut self, forked: Self) {
        if let (Some(text), Some(steps)) = (&mut self.text, forked.text) {
            text.push_str(&steps);
        }
    }

    /// The recorded text; empty when disabled.
    #[must_use]
    pub fn into_text(self) -> String {
        self.text.unwrap_or_default()
    }
}
