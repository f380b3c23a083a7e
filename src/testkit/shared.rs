//! What the server handle and every server thread share: the state behind one mutex, the
//! condition variable that announces each change, the fixed settings, the connection threads.

use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use super::http::{Answer, Conn};
use super::record::RequestRecord;
use super::store::ServerState;

/// The log target of every testkit line.
pub(crate) const TARGET: &str = "kuberesolver::testkit";

/// How often blocked server threads check whether their client went away.
pub(crate) const POLL: Duration = Duration::from_millis(50);

// Poison-tolerant: after a panic the testkit's state stays usable, so a test fails on its own
// assertion rather than on a poisoned lock.
pub(crate) use crate::util::lock;

/// Settings fixed when the server starts.
pub(crate) struct Settings {
    pub bookmark_interval: Duration,
    pub max_watch_timeout: Option<Duration>,
    pub tls: Option<Arc<ServerConfig>>,
    pub user: String,
    /// Answer lists and watches as if they had no selectors (a careless proxy or mock).
    pub ignore_selectors: bool,
    /// The Kubernetes version `/version` answers: (major, minor).
    pub version: (u32, u32),
}

/// The server as its handle and every server thread share it.
pub(crate) struct ServerCore {
    state: Mutex<ServerState>,
    cond: Condvar,
    pub settings: Settings,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// What a request handler tells the connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read the next request.
    KeepAlive,
    /// Close politely.
    Close,
    /// Close abruptly.
    Abort,
}

impl ServerCore {
    pub fn new(state: ServerState, settings: Settings) -> ServerCore {
        ServerCore {
            state: Mutex::new(state),
            cond: Condvar::new(),
            settings,
            threads: Mutex::new(Vec::new()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ServerState> {
        lock(&self.state)
    }

    /// Wakes everything waiting for a change.
    pub fn changed(&self) {
        self.cond.notify_all();
    }

    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, ServerState>,
        timeout: Duration,
    ) -> MutexGuard<'a, ServerState> {
        match self.cond.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    /// Waits (up to `timeout`) until `done` holds; returns whether it did.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&ServerState) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if done(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            st = self.wait(st, end - now);
        }
    }

    /// Keeps a connection thread's handle, to join it at shutdown (finished ones are let go).
    pub fn track(&self, handle: JoinHandle<()>) {
        let mut threads = lock(&self.threads);
        threads.retain(|h| !h.is_finished());
        threads.push(handle);
    }

    /// Closes every connection and joins the connection threads.
    pub fn close_connections(&self) {
        let conns: Vec<TcpStream> = self.lock().conns.drain().map(|(_, s)| s).collect();
        for s in &conns {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.changed();
        let handles = std::mem::take(&mut *lock(&self.threads));
        for h in handles {
            let _ = h.join();
        }
    }

    /// Changes the log entry of request `record`.
    pub fn update_record(&self, record: u64, f: impl FnOnce(&mut RequestRecord)) {
        let mut st = self.lock();
        if let Some(r) = st.requests.iter_mut().rev().find(|r| r.id == record) {
            f(r);
        }
        drop(st);
        self.changed();
    }

    pub fn set_status(&self, record: u64, status: u16) {
        self.update_record(record, |r| r.status = status);
    }

    /// Whether the connection was closed by the server (shutdown, stop_listening).
    pub fn conn_gone(st: &ServerState, conn: u64) -> bool {
        st.shutdown || !st.conns.contains_key(&conn)
    }

    /// Blocks until the server closes this connection or the client goes away.
    pub fn wait_released(&self, conn: &mut Conn, conn_id: u64) {
        loop {
            {
                let st = self.lock();
                if Self::conn_gone(&st, conn_id) {
                    return;
                }
                let st = self.wait(st, POLL);
                if Self::conn_gone(&st, conn_id) {
                    return;
                }
            }
            if conn.peer_closed() {
                return;
            }
        }
    }

    /// Sends `answer`, records its status, and says what to do next.
    pub fn send(&self, conn: &mut Conn, record: u64, answer: Answer, close: bool) -> Flow {
        self.set_status(record, answer.status);
        match answer.write_to(conn, close) {
            Ok(()) if close => Flow::Close,
            Ok(()) => Flow::KeepAlive,
            Err(_) => Flow::Abort,
        }
    }
}
