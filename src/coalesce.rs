//! Runs a blocking job, such as a config reload, at most once at a time,
//! off the async workers, and lets concurrent requests share the runs.
//!
//! A reload reads and parses a file that may be large (a million targets)
//! or slow (a network filesystem). Run on an HTTP worker, twenty parallel
//! `POST /-/reload` occupied every worker, and `/-/healthy` went unanswered
//! for seconds. Here the job runs on tokio's blocking pool, and requests
//! coalesce:
//!
//! - with no run under way, a request starts one;
//! - a request arriving while a run is under way waits for the **next**
//!   run, which starts when the current one ends. Every request that
//!   arrives meanwhile shares that one next run.
//!
//! So N concurrent requests cause at most two runs, never N, and each
//! request gets the result of a run that started after it arrived: a
//! config written just before `POST /-/reload` is never answered with the
//! result of a read that happened before the write.
//!
//! Waiting is bounded: a caller gives up after its `limit` and learns that
//! the run goes on. A run cannot be interrupted (a blocked read of a file
//! cannot be), but at most one is ever under way, so a stuck one costs one
//! thread and makes later requests time out rather than pile up.

#![forbid(unsafe_code)]

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Why a caller got no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unfinished {
    /// The run took longer than the caller's limit; it goes on.
    TimedOut,
    /// The job panicked.
    Panicked,
}

type Outcome<T> = Option<Result<T, Unfinished>>;

/// The next run, shared by every request that is waiting for it.
struct Batch<T> {
    result: watch::Sender<Outcome<T>>,
    job: Box<dyn FnOnce() -> T + Send>,
}

struct State<T> {
    /// A run is under way, or about to start on a blocking thread.
    running: bool,
    /// The run after the current one, once someone asked for it.
    next: Option<Batch<T>>,
}

/// Single flight with one trailing run; see the module docs.
pub(crate) struct Coalescer<T> {
    state: Mutex<State<T>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                running: false,
                next: None,
            }),
        }
    }
}

impl<T> std::fmt::Debug for Coalescer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Coalescer")
            .field("running", &state.running)
            .field("next_requested", &state.next.is_some())
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    /// Asks for a run of `job` on a blocking thread and waits at most
    /// `limit` for its result. When a run is already waiting to start,
    /// this request joins it and `job` is dropped unused: the callers'
    /// jobs must all do the same thing.
    ///
    /// # Errors
    /// [`Unfinished::TimedOut`] after `limit`, [`Unfinished::Panicked`]
    /// when the job panicked.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) async fn run(
        self: &std::sync::Arc<Self>,
        job: impl FnOnce() -> T + Send + 'static,
        limit: Duration,
    ) -> Result<T, Unfinished> {
        let mut result = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let waiting = match &state.next {
                Some(batch) => batch.result.subscribe(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    state.next = Some(Batch {
                        result: sender,
                        job: Box::new(job),
                    });
                    receiver
                }
            };
            if !state.running {
                state.running = true;
                let this = std::sync::Arc::clone(self);
                drop(tokio::task::spawn_blocking(move || this.drive()));
            }
            waiting
        };
        let outcome = tokio::time::timeout(limit, result.wait_for(Option::is_some)).await;
        match outcome {
            Ok(Ok(done)) => done.clone().unwrap_or(Err(Unfinished::Panicked)),
            // The sender went away without a result: only if the driver
            // itself died, which catch_unwind prevents.
            Ok(Err(_)) => Err(Unfinished::Panicked),
            Err(_) => Err(Unfinished::TimedOut),
        }
    }

    /// On a blocking thread: runs the waiting batch, then the one that
    /// gathered meanwhile, until none is waiting.
    fn drive(&self) {
        loop {
            let batch = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                match state.next.take() {
                    Some(batch) => batch,
                    None => {
                        state.running = false;
                        return;
                    }
                }
            };
            // A panicking job must not leave `running` set for ever.
            let result = std::panic::catch_unwind(AssertUnwindSafe(batch.job))
                .map_err(|_| Unfinished::Panicked);
            batch.result.send_replace(Some(result));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job that counts its runs and how many ran at once.
    #[derive(Clone, Default)]
    struct Counting {
        runs: Arc<AtomicUsize>,
        running: Arc<AtomicUsize>,
        most_at_once: Arc<AtomicUsize>,
    }

    impl Counting {
        fn job(&self, took: Duration) -> impl FnOnce() -> usize + Send + 'static {
            let this = self.clone();
            move || {
                let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
                this.most_at_once.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(took);
                this.running.fetch_sub(1, Ordering::SeqCst);
                this.runs.fetch_add(1, Ordering::SeqCst) + 1
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_at_most_two_runs_one_at_a_time() {
        let coalescer = Arc::new(Coalescer::default());
        let counting = Counting::default();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (coalescer, job) = (
                Arc::clone(&coalescer),
                counting.job(Duration::from_millis(200)),
            );
            requests.spawn(async move { coalescer.run(job, Duration::from_secs(10)).await });
        }
        let mut results = Vec::new();
        while let Some(joined) = requests.join_next().await {
            results.push(joined.unwrap().unwrap());
        }
        let runs = counting.runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&runs), "20 requests caused {runs} runs");
        assert_eq!(counting.most_at_once.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|run| (1..=runs).contains(run)));

        // Later requests start a fresh run rather than reuse an old result.
        let again = coalescer
            .run(counting.job(Duration::ZERO), Duration::from_secs(10))
            .await;
        assert_eq!(again, Ok(runs + 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_during_a_run_gets_the_next_run() {
        let coalescer = Arc::new(Coalescer::default());
        let counting = Counting::default();
        // The first job says when the driver has taken it and then holds
        // until released, so the second request surely arrives during the
        // run, however slowly a loaded machine schedules either side.
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first_job = {
            let count = counting.job(Duration::ZERO);
            move || {
                let _ = started.send(());
                // Bounded, so a test that fails elsewhere cannot hang here.
                let _ = released.recv_timeout(Duration::from_secs(10));
                count()
            }
        };
        let first = {
            let coalescer = Arc::clone(&coalescer);
            tokio::spawn(async move { coalescer.run(first_job, Duration::from_secs(10)).await })
        };
        tokio::time::timeout(Duration::from_secs(10), has_started)
            .await
            .expect("the first run did not start within 10 s")
            .unwrap();
        let second = {
            let (coalescer, job) = (Arc::clone(&coalescer), counting.job(Duration::ZERO));
            tokio::spawn(async move { coalescer.run(job, Duration::from_secs(10)).await })
        };
        // Release the first run only once the second request is waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while coalescer.state.lock().unwrap().next.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the second request did not arrive within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(
            second.await.unwrap(),
            Ok(2),
            "a run that started after the request"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_is_bounded_and_a_panic_is_reported_not_kept() {
        let coalescer = Arc::new(Coalescer::default());
        let slow = coalescer
            .run(
                || std::thread::sleep(Duration::from_millis(500)),
                Duration::from_millis(50),
            )
            .await;
        assert_eq!(slow, Err(Unfinished::TimedOut));
        let panicked = coalescer
            .run(|| panic!("a job that panics"), Duration::from_secs(10))
            .await;
        assert_eq!(panicked, Err(Unfinished::Panicked));
        let after = coalescer.run(|| (), Duration::from_secs(10)).await;
        assert_eq!(after, Ok(()), "the coalescer still works after a panic");
    }
}
