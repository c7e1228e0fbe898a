//! The one writer of a database: a thread that owns the [`Outbox`] (and the tables kept
//! beside it, such as the dispatcher's), fed through a bounded channel.
//!
//! Callers hand it a job — a closure on the `Outbox` — and wait for the result: threads
//! with [`Store::call`], async code with [`Store::run`], which waits on the blocking pool so
//! that no runtime worker ever waits on SQLite. Jobs run one at a time in the order they
//! were sent, so a row pushed before a notification is seen by the reader after it.
//! Capacity: [`QUEUE`] jobs; beyond it callers wait (back-pressure, nothing dropped).
//! A job must not call the store itself (it would wait on its own thread). Shutdown: the
//! thread ends when the last handle is dropped, after the jobs already queued.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use super::Outbox;

/// Jobs waiting for the writer before callers wait too.
pub const QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut Outbox) + Send>;

/// A handle to the writer thread of one database.
pub struct Store {
    tx: SyncSender<Job>,
}

impl Store {
    /// Starts the writer thread (named `store-<name>`) owning `outbox`.
    pub fn start(outbox: Outbox, name: &str) -> Arc<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name(format!("store-{name}"))
            .spawn(move || {
                let mut outbox = outbox;
                for job in rx {
                    // A job that panics loses its own result (its caller sees the panic),
                    // never the writer.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut outbox)));
                }
            })
            .expect("spawn store writer");
        Arc::new(Self { tx })
    }

    /// Runs `f` on the writer thread and returns its result; the calling thread waits.
    /// `f` may borrow from the caller: the call does not return before `f` has run or
    /// been dropped.
    pub fn call<'a, R: Send + 'a>(&self, f: impl FnOnce(&mut Outbox) -> R + Send + 'a) -> R {
        let (done, result) = sync_channel::<std::thread::Result<R>>(1);
        let job: Box<dyn FnOnce(&mut Outbox) + Send + 'a> = Box::new(move |o: &mut Outbox| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(o)));
            let _ = done.send(r);
        });
        // SAFETY: the job only lives beyond 'a inside the channel and the writer thread, and
        // this function does not return until the job has run (its result arrives) or has
        // been dropped (the sender inside it is gone, so `recv` fails): either way before 'a
        // ends. A failed `send` hands the job back here, where it is dropped.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce(&mut Outbox) + Send + 'a>, Job>(job) };
        if let Err(back) = self.tx.send(job) {
            drop(back);
            panic!("the store's writer thread is gone");
        }
        match result.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the store's writer thread is gone"),
        }
    }

    /// [`Outbox::transaction`] on the writer thread: a state change and the messages that
    /// announce it commit together or not at all.
    pub fn transaction<'a, T: Send + 'a, E: From<super::OutboxError> + Send + 'a>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction, &mut Vec<super::Message>) -> Result<T, E> + Send + 'a,
    ) -> Result<T, E> {
        self.call(move |o| o.transaction(f))
    }

    /// [`call`](Self::call) from async code: waits on the blocking pool, never on a runtime
    /// worker.
    pub async fn run<R: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&mut Outbox) -> R + Send + 'static) -> R {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.call(f)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("store job cancelled: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Kind, Message};

    fn store(name: &str) -> Arc<Store> {
        let dir = std::env::temp_dir().join(format!("gridsight-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::start(Outbox::open(&dir.join("outbox.db"), 1 << 20).unwrap(), name)
    }

    fn msg(i: usize) -> Message {
        Message { topic: "t".into(), payload: i.to_string().into_bytes(), retain: false, kind: Kind::Alert }
    }

    /// Jobs from many threads run one at a time, each caller's in its order; a borrowed
    /// value is fine; a panicking job reaches its caller and the writer goes on.
    #[test]
    fn one_writer_in_order_and_panics_reach_the_caller() {
        let s = store("order");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = s.clone();
                scope.spawn(move || {
                    for i in 0..25 {
                        let m = msg(t * 100 + i);
                        s.call(|o| o.push(&m).unwrap());
                    }
                });
            }
        });
        let rows = s.call(|o| o.pending(0, 1000).unwrap());
        assert_eq!(rows.len(), 100);
        for t in 0..4 {
            let mine: Vec<usize> = rows
                .iter()
                .map(|r| String::from_utf8_lossy(&r.message.payload).parse::<usize>().unwrap())
                .filter(|v| v / 100 == t)
                .collect();
            assert_eq!(mine, (0..25).map(|i| t * 100 + i).collect::<Vec<_>>());
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.call(|_| panic!("bad job"))));
        assert!(r.is_err());
        assert_eq!(s.call(|o| o.len().unwrap()), 100, "the writer survived");
    }

    #[test]
    fn async_callers_wait_off_the_runtime() {
        let s = store("async");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let n = rt.block_on(async {
            for i in 0..10 {
                let m = msg(i);
                s.run(move |o| o.push(&m).unwrap()).await;
            }
            s.run(|o| o.len().unwrap()).await
        });
        assert_eq!(n, 10);
    }
}
