//! Waking readers at the head of the log: one `LISTEN` connection per store, shared by every
//! waiter, with polling as the fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use esrs_core::Position;
use esrs_core::error::ErrorChain;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::PgStore;

/// How long a store waits before trying to listen again after it could not.
const RELISTEN_AFTER: Duration = Duration::from_secs(5);

/// Sends the store's notification; one statement that writes nothing, so its commit is
/// quick (PostgreSQL serialises the commits of notifying transactions).
const NOTIFY: &str = "SELECT pg_notify($1, '')";

/// The shared listener of a store, and the sender of its notifications.
pub(super) struct Notifier {
    /// Bumped on every notification, and whenever notifications may have been missed.
    generation: Arc<watch::Sender<u64>>,
    state: Mutex<ListenState>,
    /// An append committed and readers elsewhere have not been notified yet.
    pending: AtomicBool,
    /// A task is sending notifications.
    sending: AtomicBool,
}

#[derive(Default)]
struct ListenState {
    task: Option<tokio::task::JoinHandle<()>>,
    failed_at: Option<Instant>,
}

impl Notifier {
    pub(super) fn new() -> Self {
        Self {
            generation: Arc::new(watch::Sender::new(0)),
            state: Mutex::new(ListenState::default()),
            pending: AtomicBool::new(false),
            sending: AtomicBool::new(false),
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(task) = self.state.get_mut().task.take() {
            task.abort();
        }
    }
}

/// Waits until events after `after` are readable by
/// [`read_all`](esrs_core::EventStore::read_all), a notification arrives, or `timeout`
/// passes.
pub(super) async fn wait_for_events(
    store: &PgStore,
    after: Position,
    timeout: Duration,
) -> esrs_core::Result<()> {
    let deadline = Instant::now() + timeout;
    // Connecting the listener counts against the timeout: a slow or unreachable server
    // makes this wait end on time, polling.
    let listening = store.inner.notify
        && tokio::time::timeout_at(deadline, store.ensure_listening())
            .await
            .unwrap_or(false);
    // Subscribed before the check, so a commit between the check and the wait wakes it.
    let mut notified = store.inner.notifier.generation.subscribe();
    loop {
        if store.has_events_after(after).await? {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let poll = deadline.min(now + store.inner.poll_interval);
        if listening {
            tokio::select! {
                changed = notified.changed() => {
                    if changed.is_ok() {
                        return Ok(());
                    }
                    tokio::time::sleep_until(poll).await;
                }
                () = tokio::time::sleep_until(poll) => {}
            }
        } else {
            tokio::time::sleep_until(poll).await;
        }
    }
}

impl PgStore {
    /// Tells readers that an append committed: this process's waiters at once, others
    /// through `NOTIFY`.
    ///
    /// Notifications are sent by one task per store, one at a time and at most one per
    /// notification interval, outside the appends' transactions: every append that commits
    /// while one is in flight or within the interval after it shares the next one, so a
    /// writer sends at most one notification per interval however many appends it commits,
    /// and the appends' commits never wait on the notification queue.
    pub(crate) fn announce_append(&self) {
        let notifier = &self.inner.notifier;
        notifier.generation.send_modify(|g| *g = g.wrapping_add(1));
        if !self.inner.notify {
            return;
        }
        notifier.pending.store(true, Ordering::SeqCst);
        if notifier
            .sending
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            notifier.sending.store(false, Ordering::SeqCst);
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            let notifier = &store.inner.notifier;
            let channel = store.notification_channel();
            let interval = store.inner.notify_interval;
            loop {
                while notifier.pending.swap(false, Ordering::SeqCst) {
                    let started = Instant::now();
                    let sent = match store.connections().lease().await {
                        Ok(mut lease) => sqlx::query(NOTIFY)
                            .bind(&channel)
                            .execute(&mut lease)
                            .await
                            .map(drop),
                        Err(error) => Err(error),
                    };
                    if let Err(error) = sent {
                        tracing::warn!(error = %ErrorChain::new(&error), channel, "cannot notify readers of new events; they will poll");
                    }
                    // Appends that commit meanwhile share the next notification.
                    tokio::time::sleep_until(started + interval).await;
                }
                notifier.sending.store(false, Ordering::SeqCst);
                // An append that set `pending` after the loop's last check and saw
                // `sending` still set relies on this task: take the work back if so.
                if !notifier.pending.load(Ordering::SeqCst)
                    || notifier
                        .sending
                        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                {
                    break;
                }
            }
        });
    }

    /// Starts the store's listener if it is not running; whether it runs.
    async fn ensure_listening(&self) -> bool {
        let mut state = self.inner.notifier.state.lock().await;
        if state.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return true;
        }
        if state
            .failed_at
            .is_some_and(|at| at.elapsed() < RELISTEN_AFTER)
        {
            return false;
        }
        match self.start_listener().await {
            Ok(task) => {
                state.task = Some(task);
                state.failed_at = None;
                true
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain::new(&error), schema = self.schema(), "cannot listen for new events; polling instead");
                state.task = None;
                state.failed_at = Some(Instant::now());
                false
            }
        }
    }

    /// Starts the task that wakes the store's waiters on every notification its listener
    /// receives.
    async fn start_listener(&self) -> Result<tokio::task::JoinHandle<()>, sqlx::Error> {
        let mut listener = self
            .connections()
            .listen(&self.notification_channel())
            .await?;
        let generation = self.inner.notifier.generation.clone();
        let schema = self.schema().to_owned();
        Ok(tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    // A notification, or a lost connection that was re-established (and
                    // notifications may have been missed meanwhile): wake the waiters.
                    Ok(()) => generation.send_modify(|g| *g = g.wrapping_add(1)),
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain::new(&error), schema, "lost the notification listener; polling until it restarts");
                        generation.send_modify(|g| *g = g.wrapping_add(1));
                        break;
                    }
                }
            }
            listener.close().await;
        }))
    }
}
