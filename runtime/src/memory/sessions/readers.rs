//! Reading `state.db`: opening a read connection, and the queries run on
//! one (the sessions, a session's messages, full-text search).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{BUSY_TIMEOUT, Message, SearchHit, SessionSummary};

/// Idle read connections kept open; more are opened when more reads run at
/// once, and closed after.
const MAX_IDLE_READERS: usize = 4;

/// The read connections of a store: one is taken for each read and put back
/// after.
pub(super) struct ReaderPool {
    /// Idle read connections. The lock is held only to take or return one.
    idle: Mutex<Vec<Connection>>,
    path: PathBuf,
}

impl ReaderPool {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            path: path.to_owned(),
        }
    }

    pub(super) fn take(&self) -> anyhow::Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path)
                .with_context(|| format!("cannot open {} to read", self.path.display())),
        }
    }

    pub(super) fn put_back(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Close the idle connections.
    pub(super) fn close(&mut self) {
        self.idle
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// A read connection: never creates the database (the writer did), never
/// writes, and waits like the writer for the rare moments a reader must
/// (another process recovering the WAL).
fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

pub(super) fn list(conn: &Connection, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
    // The title: the one stored, else the start of the first user message.
    let mut statement = conn.prepare_cached(
        "SELECT s.id, s.parent_id,
                coalesce(s.title, (SELECT substr(m.content, 1, ?2) FROM messages m
                                   WHERE m.session_id = s.id AND m.role = 'user'
                                   ORDER BY m.id LIMIT 1)),
                s.created_at, s.updated_at,
                (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
         FROM sessions s ORDER BY s.updated_at DESC, s.id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map(params![limit as i64, TITLE_SOURCE_CHARS], |row| {
        let title: Option<String> = row.get(2)?;
        Ok(SessionSummary {
            id: row.get(0)?,
            parent_id: row.get(1)?,
            title: title
                .map(|text| shorten_title(&text))
                .filter(|t| !t.is_empty()),
            created_at: row.get(3)?,
            updated_at: row.get(4)?,
            messages: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Longest title shown, in characters.
const TITLE_CHARS: usize = 60;
/// Characters of a message read to make its title: enough for
/// [`TITLE_CHARS`] after whitespace and escape sequences are dropped.
const TITLE_SOURCE_CHARS: i64 = 1000;

/// `text` as a title: one line of at most [`TITLE_CHARS`] characters,
/// escape sequences and control characters removed, runs of whitespace made
/// one space, cut at a word boundary when one is near, with `…`.
pub(super) fn shorten_title(text: &str) -> String {
    let clean = crate::untrusted_text::sanitize(text, 4 * TITLE_SOURCE_CHARS as usize, false);
    let words: Vec<&str> = clean.split_whitespace().collect();
    let line = words.join(" ");
    if line.chars().count() <= TITLE_CHARS {
        return line;
    }
    let cut: String = line.chars().take(TITLE_CHARS - 1).collect();
    // Within the last 20 characters, end at a space rather than mid-word.
    let kept = match cut.rfind(' ') {
        Some(space) if cut[space..].chars().count() <= 20 => &cut[..space],
        _ => &cut,
    };
    format!("{}…", kept.trim_end())
}

pub(super) fn exists(conn: &Connection, session_id: &str) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
        .query_row([session_id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn messages(conn: &Connection, session_id: &str) -> anyhow::Result<Vec<Message>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, role, content, tool_calls, tool_call_id, name, created_at
         FROM messages WHERE session_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([session_id], |row| {
        let tool_calls: Option<String> = row.get(3)?;
        Ok(Message {
            id: row.get(0)?,
            role: row.get(1)?,
            content: row.get(2)?,
            tool_calls: tool_calls.and_then(|text| serde_json::from_str(&text).ok()),
            tool_call_id: row.get(4)?,
            name: row.get(5)?,
            created_at: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn search(
    conn: &Connection,
    query: &str,
    limit: usize,
) -> anyhow::Result<Vec<SearchHit>> {
    let terms: Vec<String> = query
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(
        "SELECT m.session_id, m.id, m.role,
                snippet(messages_fts, 0, '[', ']', '…', 12), m.created_at
         FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
         WHERE messages_fts MATCH ?1
         ORDER BY messages_fts.rowid DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![terms.join(" "), limit as i64], |row| {
        Ok(SearchHit {
            session_id: row.get(0)?,
            message_id: row.get(1)?,
            role: row.get(2)?,
            snippet: row.get(3)?,
            created_at: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::MAX_IDLE_READERS;
    use crate::memory::sessions::SessionStore;
    use crate::memory::sessions::tests::{contents, lock_for_writing, numbered, user};

    #[test]
    fn titles_are_one_short_clean_line() {
        use super::shorten_title;
        assert_eq!(
            shorten_title("Tell me about zebras"),
            "Tell me about zebras"
        );
        assert_eq!(
            shorten_title("  two\n\nlines\t and \u{1b}[31mred\u{1b}[0m  "),
            "two lines and red"
        );
        let long =
            "Please summarise the quarterly report on the Kubernetes migration and list the risks";
        let title = shorten_title(long);
        assert_eq!(
            title,
            "Please summarise the quarterly report on the Kubernetes…"
        );
        assert!(title.chars().count() <= 60);
        let one_word = "x".repeat(200);
        assert_eq!(shorten_title(&one_word).chars().count(), 60);
        assert_eq!(shorten_title(" \n "), "");
    }

    #[test]
    fn a_session_is_titled_by_its_first_user_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let untitled = store.create_session(None, None).unwrap();
        let named = store.create_session(None, Some("zebra talk")).unwrap();
        let empty = store.create_session(None, None).unwrap();
        let system = crate::memory::NewMessage {
            role: "system",
            content: "You are Talaria.",
            ..Default::default()
        };
        store.append(&untitled, &system).unwrap();
        store
            .append(&untitled, &user("What is\nthe capital of France?"))
            .unwrap();
        store.append(&untitled, &user("And of Spain?")).unwrap();
        store.append(&named, &user("hello")).unwrap();
        store.append(&empty, &system).unwrap();
        let title = |id: &str| {
            store
                .list(10)
                .unwrap()
                .into_iter()
                .find(|s| s.id == id)
                .unwrap()
                .title
        };
        assert_eq!(
            title(&untitled).as_deref(),
            Some("What is the capital of France?")
        );
        assert_eq!(title(&named).as_deref(), Some("zebra talk"));
        assert_eq!(title(&empty), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_go_on_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("committed zebra")).unwrap();

        let other = lock_for_writing(&path);
        other
            .execute(
                "INSERT INTO messages (session_id, role, content, created_at) VALUES (?1, 'user', 'uncommitted zebra', 'now')",
                [&session],
            )
            .unwrap();
        let waiting = store.append_async(&session, &user("waiting zebra"));
        let started = Instant::now();
        for _ in 0..20 {
            assert_eq!(contents(&store, &session), ["committed zebra"]);
            assert_eq!(store.messages_async(&session).await.unwrap().len(), 1);
            assert_eq!(store.search_async("zebra", 10).await.unwrap().len(), 1);
            assert_eq!(store.list_async(10).await.unwrap()[0].messages, 1);
            assert!(store.exists_async(&session).await.unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "reads waited for the writer: {:?}",
            started.elapsed()
        );
        other.execute_batch("COMMIT").unwrap();
        waiting.await.unwrap();
        assert_eq!(
            contents(&store, &session),
            ["committed zebra", "uncommitted zebra", "waiting zebra"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_readers_see_each_session_grow_in_order() {
        const SESSIONS: usize = 4;
        const EACH: usize = 150;
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(store.create_session_async(None, None).await.unwrap());
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // More readers than idle connections kept, on their own threads.
        let readers: Vec<_> = (0..2 * MAX_IDLE_READERS)
            .map(|reader| {
                let (store, done) = (store.clone(), Arc::clone(&done));
                let session = sessions[reader % SESSIONS].clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    let mut reads = 0;
                    loop {
                        // Read the flag first: a read after it sees every write.
                        let last = done.load(std::sync::atomic::Ordering::SeqCst);
                        let now = contents(&store, &session);
                        assert!(now.len() >= seen, "{} after {seen}", now.len());
                        assert_eq!(now, numbered(now.len()));
                        seen = now.len();
                        reads += 1;
                        if last {
                            return (seen, reads);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = sessions
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
        for writer in writers {
            writer.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        for reader in readers {
            let (seen, reads) = reader.join().unwrap();
            assert_eq!(seen, EACH);
            assert!(reads > 1);
        }
        assert!(store.shared.readers.idle.lock().unwrap().len() <= MAX_IDLE_READERS);
    }
}
