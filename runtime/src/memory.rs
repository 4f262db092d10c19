//! What the agent remembers: the bounded notes in `memories/` and the
//! session store in `state.db`.

pub mod notes;
pub mod sessions;

pub use notes::{Change, NoteError, NoteLimits, Notes, Snapshot, Target};
pub use sessions::{Message, NewMessage, SearchHit, SessionStore, SessionSummary, StoredResponse};
