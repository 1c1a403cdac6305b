//! An AIMD concurrency limiter: how many calls to a throttling-prone
//! dependency (a DynamoDB table) run at once, cut in half on throttling and
//! grown back by one per window of successes — TCP's congestion control,
//! applied to writers.
//!
//! Why here and not the SDK's adaptive mode: the SDK's client-side rate
//! limiter is one per AWS service and process and limits the *rate* of
//! every call (reads, heartbeats, other tables); this limits the
//! *concurrency* of the calls that use it, so a throttled table slows its
//! own writers only. Why not a crate: the AIMD rule is a dozen lines and
//! core to Kopter's back-pressure; the well-kept rate-limiting crates
//! (`governor`) limit rates with fixed quotas, not concurrency with
//! feedback.
//!
//! Use: `let permit = limiter.acquire().await;` around one call, then
//! `permit.throttled()` when the call was throttled (or a batch came back
//! partly unprocessed), `permit.succeeded()` when it went through; dropping
//! a permit without either reports nothing.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics;

/// Settings of an [`AimdLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdSettings {
    /// Limit at start (and after a long quiet period it grows back to
    /// `max`).
    pub initial: usize,
    /// Lowest limit (at least 1).
    pub min: usize,
    /// Highest limit.
    pub max: usize,
    /// Factor applied on a throttle (0 < factor < 1).
    pub decrease_factor: f64,
    /// At most one decrease per this long: throttles of calls that were
    /// already in flight when the limit was cut say nothing new.
    pub decrease_cooldown: Duration,
}

impl Default for AimdSettings {
    fn default() -> Self {
        Self {
            initial: 64,
            min: 1,
            max: 256,
            decrease_factor: 0.5,
            decrease_cooldown: Duration::from_millis(500),
        }
    }
}

/// A concurrency limit that adapts to throttling (see the module docs).
#[derive(Debug)]
pub struct AimdLimiter {
    name: String,
    settings: AimdSettings,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug)]
struct State {
    /// Fractional so that additive increase can be `1/limit` per success.
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
}

impl AimdLimiter {
    /// A limiter named `name` (its `limiter` metric label: keep it to a
    /// small fixed set, e.g. a table's short name).
    pub fn new(name: impl Into<String>, settings: AimdSettings) -> Self {
        let min = settings.min.max(1);
        let max = settings.max.max(min);
        let settings = AimdSettings {
            min,
            max,
            initial: settings.initial.clamp(min, max),
            ..settings
        };
        let this = Self {
            name: name.into(),
            settings,
            state: Mutex::new(State {
                limit: settings.initial as f64,
                in_flight: 0,
                last_decrease: None,
            }),
            released: Notify::new(),
        };
        this.publish(settings.initial);
        this
    }

    /// Waits until fewer than the current limit of calls hold a permit.
    pub async fn acquire(self: &Arc<Self>) -> AimdPermit {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check
            // and the await is not missed.
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().expect("limiter lock");
                if s.in_flight < s.limit.floor() as usize {
                    s.in_flight += 1;
                    return AimdPermit {
                        limiter: self.clone(),
                        reported: false,
                    };
                }
            }
            notified.await;
        }
    }

    /// The limiter's name (its `limiter` metric label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().expect("limiter lock").limit.floor() as usize
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("limiter lock").in_flight
    }

    fn release(&self, outcome: Option<bool>) {
        let limit = {
            let mut s = self.state.lock().expect("limiter lock");
            s.in_flight -= 1;
            match outcome {
                Some(true) => {
                    s.limit = (s.limit + 1.0 / s.limit).min(self.settings.max as f64);
                }
                Some(false) => {
                    let m = metrics::runtime();
                    m.limiter_throttled.with_label_values(&[&self.name]).inc();
                    let now = Instant::now();
                    let cooled = s
                        .last_decrease
                        .is_none_or(|t| now.duration_since(t) >= self.settings.decrease_cooldown);
                    if cooled {
                        s.limit =
                            (s.limit * self.settings.decrease_factor).max(self.settings.min as f64);
                        s.last_decrease = Some(now);
                        m.limiter_decreases.with_label_values(&[&self.name]).inc();
                        tracing::debug!(limiter = %self.name, limit = s.limit, "throttled: concurrency cut");
                    }
                }
                None => {}
            }
            s.limit.floor() as usize
        };
        self.publish(limit);
        self.released.notify_waiters();
    }

    fn publish(&self, limit: usize) {
        metrics::runtime()
            .limiter_limit
            .with_label_values(&[&self.name])
            .set(limit as i64);
    }
}

/// One call's slot in an [`AimdLimiter`].
#[derive(Debug)]
pub struct AimdPermit {
    limiter: Arc<AimdLimiter>,
    reported: bool,
}

impl AimdPermit {
    /// The call went through: grow the limit by `1/limit`.
    pub fn succeeded(mut self) {
        self.reported = true;
        self.limiter.release(Some(true));
    }

    /// The call was throttled: cut the limit (once per cooldown).
    pub fn throttled(mut self) {
        self.reported = true;
        self.limiter.release(Some(false));
    }
}

impl Drop for AimdPermit {
    fn drop(&mut self) {
        if !self.reported {
            self.limiter.release(None);
        }
    }
}

/// The process-wide limiter named `name`, created with `settings` on first
/// use: every writer of one table in a process shares it, so throttling
/// seen by one message's writes slows all of them.
pub fn shared(name: &str, settings: AimdSettings) -> Arc<AimdLimiter> {
    static LIMITERS: LazyLock<Mutex<HashMap<String, Arc<AimdLimiter>>>> =
        LazyLock::new(Mutex::default);
    LIMITERS
        .lock()
        .expect("limiter map lock")
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(AimdLimiter::new(name, settings)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AimdSettings {
        AimdSettings {
            initial: 8,
            min: 1,
            max: 16,
            decrease_factor: 0.5,
            decrease_cooldown: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn halves_on_throttle_once_per_cooldown_and_grows_back_additively() {
        let l = Arc::new(AimdLimiter::new("test-aimd", settings()));
        assert_eq!(l.limit(), 8);
        let a = l.acquire().await;
        let b = l.acquire().await;
        a.throttled();
        assert_eq!(l.limit(), 4);
        // Same cooldown window: a second throttle says nothing new.
        b.throttled();
        assert_eq!(l.limit(), 4);
        tokio::time::advance(Duration::from_secs(1)).await;
        l.acquire().await.throttled();
        assert_eq!(l.limit(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            l.acquire().await.throttled();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(l.limit(), 1, "never below min");
        // Additive increase: about `limit` successes per +1.
        let mut successes = 0;
        while l.limit() < 4 {
            l.acquire().await.succeeded();
            successes += 1;
        }
        assert!((4..=8).contains(&successes), "{successes}");
        for _ in 0..10_000 {
            l.acquire().await.succeeded();
        }
        assert_eq!(l.limit(), 16, "capped at max");
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_concurrency_and_wakes_waiters() {
        let l = Arc::new(AimdLimiter::new(
            "test-aimd-bound",
            AimdSettings {
                initial: 2,
                ..settings()
            },
        ));
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (l, now, peak) = (l.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let p = l.acquire().await;
                let cur = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(cur, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                drop(p);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(l.in_flight(), 0);
    }
}
