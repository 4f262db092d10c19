//! The session store: `state.db` (SQLite in WAL mode) with sessions, their
//! messages, and an FTS5 index kept in sync by triggers.
//!
//! Each message is committed on its own as it is appended, so a process
//! killed at any moment loses nothing already said (WAL with
//! `synchronous = NORMAL` survives process crashes; only a power loss can
//! drop the last commits). The schema is versioned with `PRAGMA
//! user_version` and migrated forward on open.
//!
//! Several processes may use one home at once (a gateway, a cron job, a
//! `chat -q` from a shell), so every write takes SQLite's write lock up front
//! (`BEGIN IMMEDIATE`) and waits for it: a deferred transaction that reads
//! first and writes later fails with "database is locked" at once, without
//! waiting, when another process wrote in between.
//!
//! The database holds every conversation, so `state.db` is created mode
//! 0600 before SQLite opens it; SQLite gives its `-wal` and `-shm` files the
//! database file's mode, whatever the umask.
//!
//! # Many conversations in one process
//!
//! [`SessionStore`] is a cheap, cloneable handle; every conversation of a
//! process shares one. Behind it:
//!
//! - **One writer thread** owns the only write connection and takes write
//!   requests from a channel, in arrival order, answering each after the
//!   transaction holding it has committed. SQLite lets one connection write
//!   at a time whatever we do; several write connections in one process
//!   would queue for that lock in SQLite's busy handler, which sleeps
//!   (1, 2, 5 … up to 100 ms) between attempts instead of waking the next
//!   writer when the lock comes free. A channel in front of one connection
//!   hands the lock on without sleeping, keeps each statement prepared once,
//!   and lets the writes that arrive during a commit share the next
//!   transaction (each in its own savepoint: one failed write fails alone).
//!   Other processes are still waited for with `BEGIN IMMEDIATE` and the
//!   busy timeout.
//! - **Separate read connections** (a small pool, opened as needed, made
//!   `query_only`): in WAL mode a reader sees the last commit and never
//!   waits for a writer, of this process or another.
//!
//! Async code uses the `*_async` methods, which never block the runtime: a
//! write is handed to the writer and its answer awaited, a read runs under
//! `spawn_blocking`. A write is queued when its method is called, not when
//! the future is first polled: dropping the future (a turn stopped with
//! Ctrl-C) does not withdraw it, and it is committed all the same. Synchronous
//! code (`talaria sessions ...`, tests, benchmarks) uses the blocking
//! methods, which keep the names the store always had: a read runs on the
//! calling thread, a write waits for the writer's answer on a plain channel.
//! Neither kind holds a lock across I/O.
//!
//! Dropping the last handle closes the channel: the writer commits what was
//! already queued, closes its connection and ends, and the drop waits for
//! it (well under a millisecond when nothing is queued), so the database is
//! closed once the store is gone. A write that fails (or finds the writer
//! gone) returns an error to its caller; none is dropped silently.
//!
//! The writer thread and the writes are in `writer`, the read connections
//! and the queries in `readers`, the tables and their migrations in
//! `schema`.

mod readers;
mod schema;
mod writer;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::oneshot;

use readers::{ReaderPool, exists, list, messages, search};
use schema::schema_version;
use writer::{Job, Reply, Write, configure, new_session, serve, writer_stopped};

/// How long a statement waits for another process to release the database.
/// One write here holds the lock for milliseconds (a message and its index
/// entries), but several processes may queue for it, and a WAL checkpoint or
/// a migration on a slow disk holds it longer; waiting 30 s covers a busy
/// home without making a truly stuck one hang for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The files SQLite keeps beside the database in WAL mode.
const COMPANION_SUFFIXES: &[&str] = &["-wal", "-shm"];

/// A handle on `state.db`; clones share one writer and one pool of readers
/// (see the module documentation).
#[derive(Clone)]
pub struct SessionStore {
    shared: Arc<Shared>,
}

/// A message to append.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'a str,
    pub content: &'a str,
    /// The assistant's tool calls, as the OpenAI JSON array.
    pub tool_calls: Option<&'a serde_json::Value>,
    /// For `tool` messages: the call answered.
    pub tool_call_id: Option<&'a str>,
    /// For `tool` messages: the tool's name.
    pub name: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub tool_calls: Option<serde_json::Value>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    pub created_at: String,
}

/// A response of the gateway's Responses API, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub session_id: String,
    /// The response object as it was sent, JSON.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub parent_id: Option<String>,
    /// The stored title, else the start of the first user message: one
    /// line of at most 60 characters, without control characters.
    pub title: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub session_id: String,
    pub message_id: i64,
    pub role: String,
    /// The matching part of the message, matches in `[` `]`.
    pub snippet: String,
    pub created_at: String,
}

impl SessionStore {
    /// Open (creating and migrating as needed) and start the writer. This
    /// blocks: it may wait for another process migrating the same database.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        make_private(path)?;
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let conn = configure(conn).with_context(|| format!("cannot prepare {}", path.display()))?;
        let (sender, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("talaria-sessions".into())
            .spawn(move || serve(conn, jobs))
            .context("cannot start the session store's writer thread")?;
        Ok(Self {
            shared: Arc::new(Shared {
                sender: Some(sender),
                writer: Some(writer),
                readers: ReaderPool::new(path),
            }),
        })
    }

    pub fn schema_version(&self) -> anyhow::Result<usize> {
        self.read(schema_version)
    }

    // Writes, blocking.

    /// Start a session, optionally continuing `parent` (resumed or forked).
    pub fn create_session(
        &self,
        parent: Option<&str>,
        title: Option<&str>,
    ) -> anyhow::Result<String> {
        let (id, write) = new_session(parent, title);
        self.write(write)?;
        Ok(id)
    }

    /// Append and commit one message; returns its id.
    pub fn append(&self, session_id: &str, message: &NewMessage<'_>) -> anyhow::Result<i64> {
        self.write(Write::append(session_id, message))
    }

    /// Delete a session and its messages; returns whether it existed.
    pub fn delete(&self, session_id: &str) -> anyhow::Result<bool> {
        Ok(self.write(Write::Delete(session_id.to_owned()))? > 0)
    }

    /// `PRAGMA integrity_check` (and the FTS index's own check), on the
    /// writer's connection: the FTS check is written as an insert.
    pub fn check_integrity(&self) -> anyhow::Result<()> {
        self.write(Write::CheckIntegrity).map(drop)
    }

    // Reads, blocking.

    pub fn list(&self, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
        self.read(|conn| list(conn, limit))
    }

    pub fn exists(&self, session_id: &str) -> anyhow::Result<bool> {
        self.read(|conn| exists(conn, session_id))
    }

    pub fn messages(&self, session_id: &str) -> anyhow::Result<Vec<Message>> {
        self.read(|conn| messages(conn, session_id))
    }

    /// Messages whose content matches every word of `query`, newest first.
    /// The query is taken as plain words, never as FTS syntax. Newest first
    /// (rather than by relevance) lets FTS5 stop after `limit` matches
    /// instead of scoring every message that holds a common word.
    pub fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
        self.read(|conn| search(conn, query, limit))
    }

    // Writes, async: queued at the call, committed before the future ends.

    /// [`create_session`](Self::create_session) for async code.
    pub fn create_session_async(
        &self,
        parent: Option<&str>,
        title: Option<&str>,
    ) -> impl Future<Output = anyhow::Result<String>> + Send + use<> {
        let (id, write) = new_session(parent, title);
        let written = self.submit(write);
        async move {
            written.await?;
            Ok(id)
        }
    }

    /// [`append`](Self::append) for async code. The message is queued when
    /// this is called; the future ends once it is committed.
    pub fn append_async(
        &self,
        session_id: &str,
        message: &NewMessage<'_>,
    ) -> impl Future<Output = anyhow::Result<i64>> + Send + use<> {
        self.submit(Write::append(session_id, message))
    }

    /// [`delete`](Self::delete) for async code.
    pub fn delete_async(
        &self,
        session_id: &str,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send + use<> {
        let written = self.submit(Write::Delete(session_id.to_owned()));
        async move { Ok(written.await? > 0) }
    }

    // Reads, async: on a read connection under `spawn_blocking`.

    pub async fn list_async(&self, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
        self.read_async(move |conn| list(conn, limit)).await
    }

    /// Keep a response of the gateway's Responses API, stored with the
    /// session of its turn.
    pub fn save_response_async(
        &self,
        id: &str,
        session_id: &str,
        body: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + use<> {
        let written = self.submit(Write::SaveResponse {
            id: id.to_owned(),
            session_id: session_id.to_owned(),
            body: body.to_owned(),
            now: crate::clock::now_rfc3339(),
        });
        async move { written.await.map(|_| ()) }
    }

    /// Delete a stored response with the session of its turn; `false` when
    /// there was none.
    pub fn delete_response_async(
        &self,
        id: &str,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send + use<> {
        let written = self.submit(Write::DeleteResponse(id.to_owned()));
        async move { Ok(written.await? > 0) }
    }

    /// A stored response: the session of its turn and its JSON body.
    pub async fn response_async(&self, id: &str) -> anyhow::Result<Option<StoredResponse>> {
        let id = id.to_owned();
        self.read_async(move |conn| {
            use rusqlite::OptionalExtension as _;
            Ok(conn
                .prepare_cached("SELECT session_id, body FROM responses WHERE id = ?1")?
                .query_row([&id], |row| {
                    Ok(StoredResponse {
                        session_id: row.get(0)?,
                        body: row.get(1)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    /// How many sessions are stored.
    pub async fn count_async(&self) -> anyhow::Result<u64> {
        self.read_async(|conn| {
            let count: i64 =
                conn.query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))?;
            Ok(count.max(0) as u64)
        })
        .await
    }

    pub async fn exists_async(&self, session_id: &str) -> anyhow::Result<bool> {
        let session_id = session_id.to_owned();
        self.read_async(move |conn| exists(conn, &session_id)).await
    }

    pub async fn messages_async(&self, session_id: &str) -> anyhow::Result<Vec<Message>> {
        let session_id = session_id.to_owned();
        self.read_async(move |conn| messages(conn, &session_id))
            .await
    }

    /// [`search`](Self::search) for async code.
    pub async fn search_async(&self, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
        let query = query.to_owned();
        self.read_async(move |conn| search(conn, &query, limit))
            .await
    }

    /// Hand `write` to the writer and wait on this thread for its answer.
    fn write(&self, write: Write) -> anyhow::Result<i64> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.shared.queue(Job {
            write,
            reply: Reply::Thread(reply),
        })?;
        answer.recv().map_err(|_| writer_stopped())?
    }

    /// Hand `write` to the writer now; the future waits for its answer.
    fn submit(&self, write: Write) -> impl Future<Output = anyhow::Result<i64>> + Send + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.shared.queue(Job {
            write,
            reply: Reply::Task(reply),
        });
        async move {
            queued?;
            answer.await.map_err(|_| writer_stopped())?
        }
    }

    /// Run `read` on a read connection of the pool, on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let conn = self.shared.readers.take()?;
        let result = read(&conn);
        self.shared.readers.put_back(conn);
        result
    }

    async fn read_async<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(read))
            .await
            .map_err(|error| anyhow::anyhow!("a session store read failed: {error}"))?
    }
}

/// What the handles share; dropped with the last of them.
struct Shared {
    /// Taken on drop, which closes the channel and ends the writer.
    sender: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    readers: ReaderPool,
}

impl Shared {
    fn queue(&self, job: Job) -> anyhow::Result<()> {
        self.sender
            .as_ref()
            .ok_or_else(writer_stopped)?
            .send(job)
            .map_err(|_| writer_stopped())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Readers first, so that the writer's connection closes last and
        // checkpoints the WAL into the database.
        self.readers.close();
        // Closing the channel ends the writer once it has committed what
        // was queued; wait for that, so the database is closed after this.
        self.sender.take();
        if let Some(writer) = self.writer.take()
            && writer.thread().id() != std::thread::current().id()
        {
            let _ = writer.join();
        }
    }
}

/// Create the database file mode 0600 before SQLite does (SQLite would use
/// 0644 less the umask, and its `-wal`/`-shm` files copy the database's
/// mode), and take group and other access away from one an older version
/// left readable.
fn make_private(path: &Path) -> anyhow::Result<()> {
    crate::home::create_private_file(path)?;
    for suffix in COMPANION_SUFFIXES {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        crate::home::restrict_to_owner(Path::new(&companion))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn user<'a>(content: &'a str) -> NewMessage<'a> {
        NewMessage {
            role: "user",
            content,
            ..Default::default()
        }
    }

    #[test]
    fn messages_are_stored_in_order_and_found_by_words() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let first = store.create_session(None, Some("planning")).unwrap();
        store
            .append(&first, &user("Let us plan the Kubernetes migration"))
            .unwrap();
        let calls = serde_json::json!([{"id": "c1", "type": "function", "function": {"name": "text__count", "arguments": "{}"}}]);
        store
            .append(
                &first,
                &NewMessage {
                    role: "assistant",
                    content: "",
                    tool_calls: Some(&calls),
                    ..Default::default()
                },
            )
            .unwrap();
        let second = store.create_session(Some(&first), None).unwrap();
        store
            .append(&second, &user("What did we decide about kubernetes?"))
            .unwrap();

        let messages = store.messages(&first).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].tool_calls.as_ref(), Some(&calls));
        let sessions = store.list(10).unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions
                .iter()
                .find(|s| s.id == second)
                .unwrap()
                .parent_id
                .as_deref(),
            Some(first.as_str())
        );

        let hits = store.search("Kubernetes", 10).unwrap();
        assert_eq!(hits.len(), 2);
        assert!(
            hits.iter()
                .any(|h| h.snippet.contains("[Kubernetes] migration")),
            "{hits:?}"
        );
        assert_eq!(store.search("kubernetes decide", 10).unwrap().len(), 1);
        // FTS syntax in a query is taken literally, not as an error.
        assert!(store.search("\"unbalanced AND (", 10).unwrap().is_empty());

        assert!(store.delete(&first).unwrap());
        assert_eq!(store.search("migration", 10).unwrap().len(), 0);
        assert_eq!(store.list(10).unwrap()[0].parent_id, None);
        store.check_integrity().unwrap();
    }

    #[test]
    fn search_finds_the_conversation_and_never_the_system_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let session = store.create_session(None, None).unwrap();
        let message = |role, content, name| NewMessage {
            role,
            content,
            name,
            ..Default::default()
        };
        for (role, content, name) in [
            (
                "system",
                "Skills: wombat-tools. Tool schema: {\"burrow\": \"string\"}",
                None,
            ),
            ("user", "How deep does a wombat dig?", None),
            ("assistant", "Let me look that up.", None),
            (
                "tool",
                "wombat burrows reach three metres",
                Some("files__read"),
            ),
        ] {
            store
                .append(&session, &message(role, content, name))
                .unwrap();
        }
        let roles = |query| {
            let hits = store.search(query, 10).unwrap();
            hits.into_iter().map(|h| h.role).collect::<Vec<_>>()
        };
        assert_eq!(roles("wombat"), ["tool", "user"]);
        assert_eq!(roles("burrows"), ["tool"]);
        assert!(
            roles("Skills").is_empty(),
            "the system prompt is not searched"
        );
        assert!(
            roles("schema").is_empty(),
            "the system prompt is not searched"
        );
        store.check_integrity().unwrap();
        assert!(store.delete(&session).unwrap());
        assert!(roles("wombat").is_empty());
        store.check_integrity().unwrap();
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_and_its_wal_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("a secret")).unwrap();
        // While the store is open, SQLite keeps its -wal and -shm beside it.
        for name in ["state.db", "state.db-wal", "state.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
        drop(store);

        // A database an older version left readable is made private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.path().join("state.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(store.messages(&session).unwrap().len(), 1);
    }

    #[test]
    fn processes_opening_a_fresh_database_at_once_all_succeed() {
        const OPENERS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let start = std::sync::Barrier::new(OPENERS);
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let store = SessionStore::open(&path)?;
                        // Each writes at once too, racing the others' first writes.
                        let session = store.create_session(None, None)?;
                        store.append(&session, &user("first words"))?;
                        anyhow::Ok(store.schema_version()?)
                    })
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap();
                assert_eq!(version.unwrap(), schema::MIGRATIONS.len());
            }
        });
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.list(100).unwrap().len(), OPENERS);
        assert_eq!(store.search("first", 100).unwrap().len(), OPENERS);
        store.check_integrity().unwrap();
    }

    // For the tests of the writer and the readers.

    pub(super) fn contents(store: &SessionStore, session: &str) -> Vec<String> {
        store
            .messages(session)
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect()
    }

    pub(super) fn numbered(count: usize) -> Vec<String> {
        (0..count).map(|n| n.to_string()).collect()
    }

    /// A connection of "another process" holding the write lock.
    pub(super) fn lock_for_writing(path: &Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }
}
