//! Helpers for keeping a tool's work and output bounded: the host stops a
//! skill that exceeds its limits, but a tool that trims gracefully gives the
//! model something to work with.

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
}
