//! A bounded multi-producer, single-consumer queue that holds no memory while
//! it is empty.
//!
//! Each connection has three queues (requests, outbound frames, direct
//! signals) that are empty nearly all the time. Tokio's `mpsc` channel
//! allocates a block of 32 slots and a cache-padded header up front, about
//! 1.3 KiB per queue whatever its bound: a third of an idle WebSocket
//! connection's budget for three queues. This one is a `VecDeque` behind a
//! mutex plus two [`Notify`]s (about 150 bytes); the deque's buffer is
//! released whenever the queue empties, at the cost of one allocation per
//! burst.
//!
//! The API mirrors the parts of `tokio::sync::mpsc` the session uses, with its
//! error types, so the policies written around it (wait, time out, drop when
//! full) read the same. `recv` and `send` are cancel-safe: an item is taken or
//! placed synchronously, never across an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
pub use tokio::sync::mpsc::error::{SendError, SendTimeoutError, TryRecvError, TrySendError};

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken when an item arrives or the last sender goes.
    items: Notify,
    /// Woken when room appears or the receiver goes.
    room: Notify,
    cap: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiver: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; recover the data regardless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queue holding at most `cap` items (`cap` is raised to 1 if 0).
pub fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiver: true,
        }),
        items: Notify::new(),
        room: Notify::new(),
        cap: cap.max(1),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

/// The sending side; cloning it adds a sender.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("cap", &self.shared.cap).finish()
    }
}

/// The receiving side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `v` if there is room.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let mut s = self.shared.lock();
        if !s.receiver {
            return Err(TrySendError::Closed(v));
        }
        if s.queue.len() >= self.shared.cap {
            return Err(TrySendError::Full(v));
        }
        s.queue.push_back(v);
        drop(s);
        self.shared.items.notify_one();
        Ok(())
    }

    /// Queues `v`, waiting for room; fails only if the receiver is gone.
    pub async fn send(&self, mut v: T) -> Result<(), SendError<T>> {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before checking, so a pop in between is not missed.
            room.as_mut().enable();
            match self.try_send(v) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => v = back,
            }
            room.await;
        }
    }

    /// Like [`Sender::send`], giving up (and returning `v`) after `wait`.
    pub async fn send_timeout(&self, mut v: T, wait: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(v) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendTimeoutError::Closed(back)),
                Err(TrySendError::Full(back)) => v = back,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(SendTimeoutError::Timeout(v));
            }
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.lock();
            s.senders -= 1;
            s.senders == 0
        };
        if last {
            self.shared.items.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut s = self.shared.lock();
        match s.queue.pop_front() {
            Some(v) => {
                if s.queue.is_empty() {
                    // An idle connection keeps no buffer.
                    s.queue = VecDeque::new();
                }
                drop(s);
                self.shared.room.notify_one();
                Ok(v)
            }
            None if s.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The next item, waiting for one; `None` once every sender is gone and
    /// the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let shared = self.shared.clone();
        loop {
            let items = shared.items.notified();
            tokio::pin!(items);
            items.as_mut().enable();
            match self.try_recv() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            items.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut s = self.shared.lock();
            s.receiver = false;
            std::mem::take(&mut s.queue)
        };
        drop(dropped);
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_closes_both_ways() {
        let (tx, mut rx) = channel::<u32>(2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert!(matches!(
            tx.send_timeout(3, Duration::from_millis(20)).await,
            Err(SendTimeoutError::Timeout(3))
        ));
        assert_eq!(rx.recv().await, Some(1));
        tx.send_timeout(3, Duration::from_millis(20)).await.unwrap();
        assert_eq!(rx.try_recv().unwrap(), 2);
        assert_eq!(rx.try_recv().unwrap(), 3);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(rx.shared.lock().queue.capacity(), 0, "an empty queue holds no buffer");

        let tx2 = tx.clone();
        drop(tx);
        tx2.try_send(4).unwrap();
        drop(tx2);
        // Items queued before the last sender left are still delivered.
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None);

        let (tx, rx) = channel::<u32>(1);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
        assert!(tx.send(1).await.is_err());
    }

    #[tokio::test]
    async fn a_waiting_sender_is_woken_by_room_or_by_the_receiver_leaving() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await, Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(rx.recv().await, Some(2));

        tx.try_send(3).unwrap();
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(4).await.is_err() }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(blocked.await.unwrap(), "the send fails once the receiver is gone");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_item_or_the_last_sender_leaving() {
        let (tx, mut rx) = channel::<u32>(4);
        let got = tokio::spawn(async move {
            let a = rx.recv().await;
            let b = rx.recv().await;
            (a, b)
        });
        tokio::task::yield_now().await;
        tx.send(7).await.unwrap();
        drop(tx);
        assert_eq!(got.await.unwrap(), (Some(7), None));
    }
}
