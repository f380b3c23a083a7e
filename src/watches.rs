//! The watches running in this process, by what they watch and how.
//!
//! Resolvers of the same Service, through the same API server and credentials, from the
//! same source and with the same settings, share one watch: one thread, one connection, one
//! list and one watch request, whatever their number (one per gRPC channel, per worker, per
//! connection pool). Each resolver keeps its own pickers and subscriptions; the port is not
//! part of what is shared (`fanout.rs` resolves the one state per port). The watch stops
//! when its last resolver is dropped.
//!
//! What is compared: the namespace and Service, the [`Source`], the [`Config`] as described
//! ([`Config::same_client`]), and every setting of the builder that changes how the watch
//! runs (timeouts, backoff, event size cap). Resolvers that differ in any of them get
//! watches of their own, so no setting of one resolver is silently replaced by another's. A
//! resolver with a publish observer (feature `testkit`) never shares: the observer is its own.
//!
//! Stopping a watch (its last resolver is dropped) is done at once and waits for nothing:
//! the stop flag is set, the wake channel closed (ending a backoff wait), the agent shut
//! down (its socket is shut, so a blocked read returns and no new request can leave), and
//! every hub stopped (subscriptions end, `wait_ready` wakes). The thread then finds the flag
//! and ends by itself, within milliseconds; no drop waits for it, so dropping a thousand
//! resolvers costs a thousand of these steps, not a thousand thread exits in a row. (A TCP
//! connect in progress or a running exec plugin cannot be interrupted: that thread ends
//! within the connect timeout or the plugin's limit.)

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::backoff::Backoff;
use crate::client::{Client, Timeouts};
use crate::fanout::Fanout;
use crate::publish::Hub;
use crate::util::lock;
use crate::watcher::{Job, Watcher};
use crate::{Config, Error, Port, Source};

/// What makes two resolvers' watches the same watch.
#[derive(Clone)]
pub(crate) struct WatchKey {
    pub namespace: String,
    pub service: String,
    pub source: Source,
    pub config: Config,
    pub timeouts: Timeouts,
    pub watch_timeout: Duration,
    pub backoff: Backoff,
    pub max_line: usize,
    /// A number no other key has, for a resolver that must have a watch of its own.
    pub alone: Option<u64>,
}

impl WatchKey {
    /// A number for [`alone`](Self::alone): never equal to another. Only a resolver with
    /// the testkit's publish observer asks for one.
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn unique() -> u64 {
        use std::sync::atomic::AtomicU64;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

impl PartialEq for WatchKey {
    fn eq(&self, other: &WatchKey) -> bool {
        self.namespace == other.namespace
            && self.service == other.service
            && self.source == other.source
            && self.config.same_client(&other.config)
            && self.timeouts == other.timeouts
            && self.watch_timeout == other.watch_timeout
            && self.backoff == other.backoff
            && self.max_line == other.max_line
            && self.alone == other.alone
    }
}

impl Eq for WatchKey {}

impl Hash for WatchKey {
    /// A part of what `eq` compares: keys that are equal hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.service.hash(state);
        self.source.hash(state);
        self.config.server().hash(state);
        self.alone.hash(state);
    }
}

/// The running watches. A watch is here while it has resolvers: the last one to leave
/// removes it, under this lock, so a resolver never joins a watch that is stopping.
static WATCHES: LazyLock<Mutex<HashMap<WatchKey, Weak<RunningWatch>>>> =
    LazyLock::new(Mutex::default);

/// One watch: its thread, how to stop it, and the fanout its resolvers read from.
pub(crate) struct RunningWatch {
    key: WatchKey,
    /// Also counts the resolvers on the watch; joined and left only under the [`WATCHES`]
    /// lock.
    fanout: Arc<Fanout>,
    stopping: Arc<AtomicBool>,
    /// Taken by the stop.
    control: Mutex<Option<Control>>,
}

/// What stopping a watch uses.
struct Control {
    /// Dropping it wakes a backoff wait.
    wake: Sender<()>,
    /// `shutdown()` interrupts a blocked read or a request awaiting its response.
    agent: ureq::Agent,
    /// Tells whether the thread ended by itself; detached at the stop.
    thread: JoinHandle<()>,
}

/// One resolver's place on a watch: leaving it (dropping) may stop the watch.
pub(crate) struct Membership {
    watch: Arc<RunningWatch>,
    hub: Arc<Hub>,
}

impl Membership {
    /// The hub of the resolver's port.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

/// A watch to start when no running one matches: what [`join_or_start`] needs for it.
pub(crate) struct NewWatch {
    pub job: Job,
    pub client: Client,
    /// The hub of the first resolver's port (made by the caller: it may carry an observer).
    pub hub: Hub,
    /// The name of the watcher thread.
    pub thread_name: String,
}

/// Join the running watch of `key` on `port`, if there is one.
pub(crate) fn join(key: &WatchKey, port: &Option<Port>, label: &str) -> Option<Membership> {
    join_locked(&mut lock(&WATCHES), key, port, label)
}

fn join_locked(
    watches: &mut HashMap<WatchKey, Weak<RunningWatch>>,
    key: &WatchKey,
    port: &Option<Port>,
    label: &str,
) -> Option<Membership> {
    let watch = watches.get(key).and_then(Weak::upgrade)?;
    if !watch.is_running() {
        // Its thread ended by itself (a panic): start a new one instead.
        return None;
    }
    let hub = watch
        .fanout
        .join(port.clone(), label.to_string(), &key.service);
    Some(Membership { watch, hub })
}

/// Join the running watch of `key`, or start `new` as that watch. (Another resolver may have
/// started the same watch since [`join`] found none: then `new` is dropped unstarted.)
pub(crate) fn join_or_start(
    key: WatchKey,
    port: Option<Port>,
    label: &str,
    new: NewWatch,
) -> Result<Membership, Error> {
    let mut watches = lock(&WATCHES);
    if let Some(membership) = join_locked(&mut watches, &key, &port, label) {
        return Ok(membership);
    }
    let hub = Arc::new(new.hub);
    let fanout = Arc::new(Fanout::new(port, label.to_string(), hub.clone()));
    let stopping = Arc::new(AtomicBool::new(false));
    let (wake, stop) = crossbeam_channel::bounded(0);
    let agent = new.client.shutdown_handle();
    let watcher = Watcher::new(new.job, new.client, fanout.clone(), stop, stopping.clone());
    let thread = std::thread::Builder::new()
        .name(new.thread_name)
        .spawn(move || watcher.run())
        .map_err(|e| Error::config(format!("cannot start the watcher thread: {e}")))?;
    let watch = Arc::new(RunningWatch {
        key: key.clone(),
        fanout,
        stopping,
        control: Mutex::new(Some(Control {
            wake,
            agent,
            thread,
        })),
    });
    // Entries of watches that ended without being removed (a dead thread replaced) go too.
    watches.retain(|_, w| w.strong_count() > 0);
    watches.insert(key, Arc::downgrade(&watch));
    Ok(Membership { watch, hub })
}

impl RunningWatch {
    fn is_running(&self) -> bool {
        !self.stopping.load(Ordering::Acquire)
            && lock(&self.control)
                .as_ref()
                .is_some_and(|c| !c.thread.is_finished())
    }

    /// Stop the watch at once (see the module docs): the thread ends by itself.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(control) = lock(&self.control).take() {
            drop(control.wake);
            control.agent.shutdown();
        }
        self.fanout.stop();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let last = {
            let mut watches = lock(&WATCHES);
            let last = self.watch.fanout.leave(&self.hub) == 0;
            if last {
                let ours = watches
                    .get(&self.watch.key)
                    .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.watch)));
                if ours {
                    watches.remove(&self.watch.key);
                }
            }
            last
        };
        if last {
            self.watch.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(config: Config) -> WatchKey {
        WatchKey {
            namespace: "prod".into(),
            service: "echo".into(),
            source: Source::Auto,
            config,
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response: Duration::from_secs(30),
                read: Duration::from_secs(270),
            },
            watch_timeout: Duration::from_secs(240),
            backoff: Backoff::default(),
            max_line: 1 << 24,
            alone: None,
        }
    }

    fn api() -> Config {
        Config::new("https://10.96.0.1")
            .token_file("/var/run/secrets/token")
            .ca_file("/var/run/secrets/ca.crt")
    }

    #[test]
    fn the_same_service_server_credentials_and_settings_are_one_watch() {
        assert!(key(api()) == key(api()));
        // The default namespace only fills in targets; the key has the namespace already.
        assert!(key(api()) == key(api().namespace("other")));
    }

    #[test]
    fn any_difference_in_what_is_watched_or_how_is_another_watch() {
        let base = key(api());
        let differ: Vec<(&str, WatchKey)> = vec![
            (
                "namespace",
                WatchKey {
                    namespace: "dev".into(),
                    ..key(api())
                },
            ),
            (
                "service",
                WatchKey {
                    service: "other".into(),
                    ..key(api())
                },
            ),
            (
                "source",
                WatchKey {
                    source: Source::Endpoints,
                    ..key(api())
                },
            ),
            (
                "server",
                key(Config::new("https://10.96.0.2")
                    .token_file("/var/run/secrets/token")
                    .ca_file("/var/run/secrets/ca.crt")),
            ),
            ("token", key(api().token("t"))),
            ("token file", key(api().token_file("/other/token"))),
            ("ca", key(api().ca_pem("pem"))),
            ("tls server name", key(api().tls_server_name("kubernetes"))),
            ("client cert", key(api().client_certificate_pem("c", "k"))),
            (
                "connect timeout",
                WatchKey {
                    timeouts: Timeouts {
                        connect: Duration::from_secs(1),
                        ..base.timeouts
                    },
                    ..key(api())
                },
            ),
            (
                "watch timeout",
                WatchKey {
                    watch_timeout: Duration::from_secs(60),
                    ..key(api())
                },
            ),
            (
                "backoff",
                WatchKey {
                    backoff: Backoff::new().cap(Duration::from_secs(5)),
                    ..key(api())
                },
            ),
            (
                "event size",
                WatchKey {
                    max_line: 1024,
                    ..key(api())
                },
            ),
            (
                "alone",
                WatchKey {
                    alone: Some(WatchKey::unique()),
                    ..key(api())
                },
            ),
        ];
        for (what, other) in differ {
            assert!(base != other, "{what} differs: another watch");
        }
        let alone = WatchKey {
            alone: Some(WatchKey::unique()),
            ..key(api())
        };
        assert!(alone == alone.clone(), "a key equals itself");
        assert!(
            alone
                != WatchKey {
                    alone: Some(WatchKey::unique()),
                    ..key(api())
                }
        );
    }
}
