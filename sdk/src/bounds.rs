//! Helpers for keeping a tool's work and output bounded: the host stops a
//! skill that exceeds its limits, but a tool that trims gracefully gives the
//! model something to work with.

use std::ops::ControlFlow;

use crate::ToolError;

/// An optional count argument: `default` when absent, otherwise it must lie
/// in `1..=max`, or the model gets an `invalid-arguments` error naming the
/// argument and the range.
pub fn bounded_count(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ToolError> {
    match value.unwrap_or(default) {
        count @ 1.. if count <= max => Ok(count),
        _ => Err(ToolError::invalid_arguments(format!(
            "`{name}` must be between 1 and {max}"
        ))),
    }
}

/// `text` cut to at most `max_bytes` at a character boundary, with `…`
/// marking the cut.
pub fn clip(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        text.to_owned()
    } else {
        format!("{}…", &text[..text.floor_char_boundary(max_bytes)])
    }
}

/// `text` cut to at most `max_bytes` at a character boundary like [`clip`],
/// but for a whole output: a cut text ends with a line
/// `[{label}: showing K of N bytes; {hint}]`, so the model knows it sees a
/// part and what to do to see the rest.
pub fn clip_with_note(text: String, max_bytes: usize, label: &str, hint: &str) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let kept = text.floor_char_boundary(max_bytes);
    format!(
        "{}\n[{label}: showing {kept} of {} bytes; {hint}]",
        &text[..kept],
        text.len()
    )
}

/// A list that keeps the first `max` items offered to it and remembers
/// whether more came: the items a tool returns and its `truncated` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<T> {
    items: Vec<T>,
    max: usize,
    truncated: bool,
}

impl<T> Capped<T> {
    pub fn new(max: usize) -> Self {
        Self {
            items: Vec::new(),
            max,
            truncated: false,
        }
    }

    /// Keep `item` if there is room. Otherwise drop it, mark the list
    /// truncated and return `Break`, so that the loop or walk offering the
    /// items can stop: one more than fits is enough to know there are more.
    pub fn push(&mut self, item: T) -> ControlFlow<()> {
        if self.items.len() == self.max {
            self.truncated = true;
            return ControlFlow::Break(());
        }
        self.items.push(item);
        ControlFlow::Continue(())
    }

    /// The kept items and whether any were left out.
    pub fn into_parts(self) -> (Vec<T>, bool) {
        (self.items, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_default_and_stay_in_range() {
        assert_eq!(bounded_count("limit", None, 10, 100), Ok(10));
        assert_eq!(bounded_count("limit", Some(100), 10, 100), Ok(100));
        for bad in [0, 101] {
            assert_eq!(
                bounded_count("limit", Some(bad), 10, 100),
                Err(ToolError::invalid_arguments(
                    "`limit` must be between 1 and 100"
                ))
            );
        }
    }

    #[test]
    fn clip_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(clip("hello", 10), "hello");
        assert_eq!(clip("hello", 5), "hello");
    }

    #[test]
    fn clip_with_note_says_how_much_is_shown() {
        assert_eq!(
            clip_with_note("hello".into(), 5, "cut", "ask less"),
            "hello"
        );
        assert_eq!(
            clip_with_note("héllo".into(), 2, "cut", "ask less"),
            "h\n[cut: showing 1 of 6 bytes; ask less]"
        );
    }

    #[test]
    fn capped_keeps_the_first_items_and_notes_the_rest() {
        let mut capped = Capped::new(2);
        assert_eq!(capped.push(1), ControlFlow::Continue(()));
        assert_eq!(capped.push(2), ControlFlow::Continue(()));
        assert_eq!(capped.clone().into_parts(), (vec![1, 2], false));
        assert_eq!(capped.push(3), ControlFlow::Break(()));
        assert_eq!(capped.into_parts(), (vec![1, 2], true));

        assert_eq!(Capped::<u8>::new(1).into_parts(), (vec![], false));
    }
}
