//! An example skill: word statistics of a text. See `README.md` beside this
//! file for the walkthrough.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use talaria_sdk::{ToolError, Toolset};

/// Arguments of `top_words`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TopWordsArgs {
    /// The text to analyse.
    text: String,
    /// How many words to return (default 10, at most 100).
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize)]
struct WordCount {
    word: String,
    count: usize,
}

/// The most frequent words of a text, most frequent first, ties in
/// alphabetical order.
fn top_words(args: TopWordsArgs) -> Result<Vec<WordCount>, ToolError> {
    let limit = args.limit.unwrap_or(10);
    if limit == 0 || limit > 100 {
        return Err(ToolError::invalid_arguments(
            "`limit` must be between 1 and 100",
        ));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in args
        .text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut counts: Vec<WordCount> = counts
        .into_iter()
        .map(|(word, count)| WordCount { word, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    counts.truncate(limit);
    Ok(counts)
}

fn tools() -> Toolset {
    Toolset::new().tool(
        "top_words",
        "List the most frequent words of a text with their counts.",
        top_words,
    )
}

talaria_sdk::export_skill!(tools);
