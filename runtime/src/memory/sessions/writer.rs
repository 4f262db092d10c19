//! The writer thread: the only connection of this process that writes to
//! `state.db`, the queue of writes in front of it, and the writes
//! themselves. Why one writer and a queue: see the session store's
//! documentation.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::schema::migrate;
use super::{BUSY_TIMEOUT, NewMessage};

/// Pause between attempts at a step SQLite refuses with "busy" without
/// waiting itself (switching a fresh database to WAL).
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Most writes the writer commits in one transaction. Writes only share a
/// transaction when they were already waiting, so this bounds how long the
/// first of them waits for the others, not how long anyone waits to start.
const MAX_BATCH: usize = 64;

/// One write for the writer, and where its answer goes.
pub(super) struct Job {
    pub(super) write: Write,
    pub(super) reply: Reply,
}

/// A write; its answer is a number: the new message's id, or the rows
/// deleted.
pub(super) enum Write {
    CreateSession {
        id: String,
        parent: Option<String>,
        title: Option<String>,
        now: String,
    },
    Append {
        session_id: String,
        role: String,
        content: String,
        /// The JSON text of the tool calls.
        tool_calls: Option<String>,
        tool_call_id: Option<String>,
        name: Option<String>,
        now: String,
    },
    Delete(String),
    /// Keep a response of the gateway's Responses API (its JSON body).
    SaveResponse {
        id: String,
        session_id: String,
        body: String,
        now: String,
    },
    /// Delete a stored response and the session its turn was stored in.
    DeleteResponse(String),
    CheckIntegrity,
    /// A write that panics the writer, to test what callers see then.
    #[cfg(test)]
    Panic,
}

impl Write {
    pub(super) fn append(session_id: &str, message: &NewMessage<'_>) -> Self {
        Self::Append {
            session_id: session_id.to_owned(),
            role: message.role.to_owned(),
            content: message.content.to_owned(),
            tool_calls: message.tool_calls.map(|calls| calls.to_string()),
            tool_call_id: message.tool_call_id.map(str::to_owned),
            name: message.name.map(str::to_owned),
            now: crate::clock::now_rfc3339(),
        }
    }
}

/// A new session's id, and the write that creates it.
pub(super) fn new_session(parent: Option<&str>, title: Option<&str>) -> (String, Write) {
    let now = crate::clock::now_rfc3339();
    // 48 random bits after the second: the gateway creates thousands of
    // sessions a second, and 24 bits collided within one (a birthday bound
    // of about one in ten at 1,800 a second).
    let id = format!(
        "{}-{:012x}",
        now.replace(['-', ':'], "").trim_end_matches('Z'),
        rand::random::<u64>() & 0xffff_ffff_ffff
    );
    let write = Write::CreateSession {
        id: id.clone(),
        parent: parent.map(str::to_owned),
        title: title.map(str::to_owned),
        now,
    };
    (id, write)
}

/// Where a write's answer goes: an async task or a waiting thread.
pub(super) enum Reply {
    Task(oneshot::Sender<anyhow::Result<i64>>),
    Thread(mpsc::SyncSender<anyhow::Result<i64>>),
}

impl Reply {
    /// A caller that stopped waiting (a dropped future) needs no answer:
    /// its write stands.
    fn send(self, result: anyhow::Result<i64>) {
        match self {
            Self::Task(sender) => {
                let _ = sender.send(result);
            }
            Self::Thread(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

pub(super) fn writer_stopped() -> anyhow::Error {
    anyhow::anyhow!("the session store's writer has stopped; nothing more can be stored")
}

/// The writer thread: commit the writes in arrival order, those already
/// waiting together, until every handle is gone.
pub(super) fn serve(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(job) = jobs.try_recv()
        {
            batch.push(job);
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) =
            batch.into_iter().map(|job| (job.write, job.reply)).unzip();
        for (reply, result) in replies.into_iter().zip(commit(&conn, &writes)) {
            reply.send(result);
        }
    }
    // The connection closes here, checkpointing the WAL when it is the last.
}

/// Apply `writes` in one transaction and commit it; one result per write,
/// `Ok` only for writes the commit made durable.
fn commit(conn: &Connection, writes: &[Write]) -> Vec<anyhow::Result<i64>> {
    let all_failed = |error: &anyhow::Error| -> Vec<anyhow::Result<i64>> {
        writes
            .iter()
            .map(|_| Err(anyhow::anyhow!("{error:#}")))
            .collect()
    };
    // `BEGIN IMMEDIATE` takes the write lock at once, waiting up to
    // [`BUSY_TIMEOUT`] for other processes, so no statement after it can
    // fail on a lock another process took meanwhile.
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        return all_failed(&anyhow::Error::from(error).context("cannot start a write"));
    }
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result = if writes.len() == 1 {
            apply(conn, write)
        } else {
            apply_alone(conn, write)
        };
        if writes.len() == 1 && result.is_err() && !conn.is_autocommit() {
            // Nothing of a failed write is kept, whatever step failed.
            let _ = conn.execute_batch("ROLLBACK");
            return vec![result];
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O
            // error): none of these writes is stored.
            let cause = match &result {
                Err(error) => anyhow::anyhow!("{error:#}"),
                Ok(_) => anyhow::anyhow!("the transaction ended early"),
            };
            return all_failed(&cause.context("a write failed and was rolled back"));
        }
        results.push(result);
    }
    if let Err(error) = conn.execute_batch("COMMIT") {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return all_failed(&anyhow::Error::from(error).context("cannot commit"));
    }
    results
}

/// Apply one write of several sharing a transaction, in a savepoint, so that
/// its failure undoes it alone.
fn apply_alone(conn: &Connection, write: &Write) -> anyhow::Result<i64> {
    conn.execute_batch("SAVEPOINT one_write")?;
    match apply(conn, write) {
        Ok(value) => {
            conn.execute_batch("RELEASE one_write")?;
            Ok(value)
        }
        Err(error) => {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO one_write; RELEASE one_write")?;
            }
            Err(error)
        }
    }
}

fn apply(conn: &Connection, write: &Write) -> anyhow::Result<i64> {
    match write {
        Write::CreateSession {
            id,
            parent,
            title,
            now,
        } => {
            conn.prepare_cached(
                "INSERT INTO sessions (id, parent_id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![id, parent, title, now])
            .with_context(|| format!("cannot create session {id}"))?;
            Ok(0)
        }
        Write::Append {
            session_id,
            role,
            content,
            tool_calls,
            tool_call_id,
            name,
            now,
        } => {
            conn.prepare_cached(
                "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![session_id, role, content, tool_calls, tool_call_id, name, now])
            .with_context(|| format!("cannot store a message of session {session_id}"))?;
            let id = conn.last_insert_rowid();
            conn.prepare_cached("UPDATE sessions SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![session_id, now])?;
            Ok(id)
        }
        Write::Delete(session_id) => Ok(conn
            .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
            .execute([session_id])? as i64),
        Write::SaveResponse {
            id,
            session_id,
            body,
            now,
        } => {
            conn.prepare_cached(
                "INSERT INTO responses (id, session_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, session_id, now, body])
            .with_context(|| format!("cannot store response {id}"))?;
            Ok(0)
        }
        Write::DeleteResponse(id) => {
            let session: Option<String> = conn
                .prepare_cached("SELECT session_id FROM responses WHERE id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?;
            let Some(session) = session else {
                return Ok(0);
            };
            // The session's deletion takes the response with it.
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                .execute([&session])?;
            Ok(1)
        }
        Write::CheckIntegrity => {
            let result: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            anyhow::ensure!(result == "ok", "state.db integrity check: {result}");
            conn.execute(
                "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')",
                [],
            )
            .context("the full-text index does not match the messages")?;
            Ok(0)
        }
        #[cfg(test)]
        Write::Panic => panic!("a write panicked the writer"),
    }
}

/// Prepare the write connection: wait for other processes, WAL, foreign
/// keys, the schema up to date.
pub(super) fn configure(mut conn: Connection) -> anyhow::Result<Connection> {
    // First, so that every step below waits for other processes too.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Any transaction opened without saying otherwise writes safely too.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    enable_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Switch to WAL. The switch needs a moment of exclusive access, and SQLite
/// answers "busy" at once instead of calling the busy handler when another
/// process opens or switches a fresh database at the same instant; retry for
/// as long as any other statement would wait.
fn enable_wal(conn: &Connection) -> anyhow::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(_) => return Ok(()),
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                std::thread::sleep(BUSY_RETRY_PAUSE);
            }
            Err(error) => return Err(error).context("cannot switch to WAL mode"),
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::sessions::tests::{contents, lock_for_writing, numbered, user};
    use crate::memory::sessions::{SessionStore, make_private, readers::messages};

    /// Run `f` on its own thread and fail if it does not end within 20 s.
    fn within_20_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || done.send(f()).unwrap());
        result
            .recv_timeout(Duration::from_secs(20))
            .expect("still running after 20 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_from_threads_and_tasks_keep_each_callers_order() {
        const CALLERS: usize = 6;
        const EACH: usize = 60;
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let mut sessions = Vec::new();
        for _ in 0..3 * CALLERS {
            sessions.push(store.create_session_async(None, None).await.unwrap());
        }
        // Blocking writers on their own threads, async writers on the
        // runtime, and async writers that queue everything before awaiting.
        let threads: Vec<_> = sessions[..CALLERS]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        store.append(&session, &user(&n.to_string())).unwrap();
                    }
                })
            })
            .collect();
        let awaiting: Vec<_> = sessions[CALLERS..2 * CALLERS]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                tokio::spawn(async move {
                    for n in 0..EACH {
                        store
                            .append_async(&session, &user(&n.to_string()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let queueing: Vec<_> = sessions[2 * CALLERS..]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                tokio::spawn(async move {
                    let queued: Vec<_> = (0..EACH)
                        .map(|n| store.append_async(&session, &user(&n.to_string())))
                        .collect();
                    let mut ids = Vec::new();
                    for written in queued {
                        ids.push(written.await.unwrap());
                    }
                    ids
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for task in awaiting {
            task.await.unwrap();
        }
        for task in queueing {
            let ids = task.await.unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        }
        // A blocking call from async code works too (it blocks this worker).
        store.append(&sessions[0], &user("last")).unwrap();

        let mut expected = numbered(EACH);
        expected.push("last".into());
        assert_eq!(contents(&store, &sessions[0]), expected);
        for session in &sessions[1..] {
            assert_eq!(contents(&store, session), numbered(EACH), "{session}");
        }
        assert_eq!(
            store
                .list(100)
                .unwrap()
                .iter()
                .map(|s| s.messages)
                .sum::<i64>(),
            (3 * CALLERS * EACH + 1) as i64
        );
        store.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn writes_queued_behind_another_process_keep_their_order_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session_async(None, None).await.unwrap();

        // A failed write alone stores nothing and says why.
        let error = store
            .append_async("no-such-session", &user("lost"))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot store a message of session no-such-session"),
            "{error:#}"
        );
        let error = store.append("no-such-session", &user("lost")).unwrap_err();
        assert!(format!("{error:#}").contains("FOREIGN KEY"), "{error:#}");

        // Another process holds the write lock: the writer takes the first
        // write and waits in `BEGIN IMMEDIATE`; the next ones queue behind it
        // and are committed together once the lock is free.
        let other = lock_for_writing(&path);
        let first = store.append_async(&session, &user("first"));
        std::thread::sleep(Duration::from_millis(200));
        let good = store.append_async(&session, &user("second"));
        let bad = store.append_async("no-such-session", &user("refused"));
        let created = store.create_session_async(Some(&session), Some("child"));
        let last = store.append_async(&session, &user("third"));
        other.execute_batch("COMMIT").unwrap();

        let ids = [first.await.unwrap(), good.await.unwrap()];
        assert!(bad.await.is_err());
        let child = created.await.unwrap();
        assert!(last.await.unwrap() > ids[1]);
        assert!(ids[0] < ids[1]);
        assert_eq!(contents(&store, &session), ["first", "second", "third"]);
        assert!(store.exists(&child).unwrap());
        assert!(store.search("refused", 10).unwrap().is_empty());
        assert!(store.search("lost", 10).unwrap().is_empty());
        store.check_integrity().unwrap();
    }

    #[test]
    fn a_batch_commits_its_good_writes_and_fails_its_bad_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        make_private(&path).unwrap();
        let conn = configure(Connection::open(&path).unwrap()).unwrap();
        let (session, create) = new_session(None, None);
        let results = commit(
            &conn,
            &[
                create,
                Write::append(&session, &user("one")),
                Write::append("no-such-session", &user("refused")),
                Write::Delete("no-such-session".into()),
                Write::append(&session, &user("two")),
                Write::CheckIntegrity,
            ],
        );
        assert!(conn.is_autocommit(), "the transaction is over");
        assert_eq!(results.len(), 6);
        assert!(results[2].is_err());
        assert_eq!(results[3].as_ref().unwrap(), &0);
        let ids: Vec<i64> = [1, 4]
            .iter()
            .map(|&i| *results[i].as_ref().unwrap())
            .collect();
        assert!(ids[0] < ids[1]);
        assert!(results[5].is_ok());
        let stored: Vec<String> = messages(&conn, &session)
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(stored, ["one", "two"]);

        // A write that fails alone leaves nothing behind either.
        let results = commit(&conn, &[Write::append("no-such-session", &user("x"))]);
        assert!(results[0].is_err());
        assert!(conn.is_autocommit());
        assert_eq!(messages(&conn, "no-such-session").unwrap(), []);
    }

    #[test]
    fn a_writer_that_stops_fails_its_callers_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("kept")).unwrap();

        let error = store.write(Write::Panic).unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        let error = store.append(&session, &user("refused")).unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime
            .block_on(store.append_async(&session, &user("refused")))
            .unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        // What was committed can still be read, and the store still closes.
        assert_eq!(contents(&store, &session), ["kept"]);
        within_20_seconds(move || drop(store));
    }

    #[test]
    fn the_writer_ends_with_the_last_handle_after_committing_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        let clone = store.clone();
        drop(store);
        clone.append(&session, &user("through a clone")).unwrap();
        assert_eq!(contents(&clone, &session), ["through a clone"]);

        // Queued, not yet awaited, when the last handle goes.
        let queued: Vec<_> = (0..20)
            .map(|n| clone.append_async(&session, &user(&format!("queued {n}"))))
            .collect();
        within_20_seconds(move || drop(clone));
        // Every connection is closed: the last one folded the WAL back in.
        let wal = dir.path().join("state.db-wal");
        assert!(!wal.exists(), "{} is left", wal.display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for written in queued {
            runtime.block_on(written).unwrap();
        }
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(contents(&store, &session).len(), 21);
    }
}

#[cfg(test)]
mod id_tests {
    use super::new_session;

    #[test]
    fn session_ids_made_in_the_same_second_do_not_collide() {
        // The gateway makes thousands a second: with 24 random bits, 20,000
        // ids held a dozen duplicates on average.
        let ids: std::collections::HashSet<String> =
            (0..20_000).map(|_| new_session(None, None).0).collect();
        assert_eq!(ids.len(), 20_000);
    }
}
