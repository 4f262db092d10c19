//! The `web` skill: `fetch` reads a page as text, `search` asks the search
//! API the operator configured. Every request goes through the host, which
//! lets it reach only the hosts the operator granted.

mod html;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use talaria_sdk::{ToolError, Toolset, http};

const DEFAULT_MAX_CHARS: usize = 20_000;
const MAX_CHARS: usize = 100_000;
const DEFAULT_RESULTS: usize = 8;
/// The operator's search endpoint: the first line of `search-url` in the
/// skill's data directory, mounted read-only.
const SEARCH_URL_FILE: &str = "/config/search-url";
const MAX_RESULTS: usize = 20;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchArgs {
    /// The page to read: an http:// or https:// URL.
    url: String,
    /// Most characters of text to return (default 20000, at most 100000).
    max_chars: Option<usize>,
}

fn fetch(args: FetchArgs) -> Result<Value, ToolError> {
    let max_chars = args
        .max_chars
        .unwrap_or(DEFAULT_MAX_CHARS)
        .clamp(1, MAX_CHARS);
    let response = http::get(&args.url)
        .header(
            "Accept",
            "text/html, application/xhtml+xml, application/json, text/plain;q=0.9, */*;q=0.1",
        )
        .header("User-Agent", "talaria-web/0.1")
        .send()?;
    let content_type = response
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (title, text) = if media == "text/html" || media == "application/xhtml+xml" {
        let page = html::to_text(&response.text());
        (page.title, page.text)
    } else if media == "application/json" || media.ends_with("+json") {
        let text = match serde_json::from_slice::<Value>(&response.body) {
            Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| response.text()),
            Err(_) => response.text(),
        };
        (None, text)
    } else if media.starts_with("text/") {
        (None, response.text())
    } else {
        return Err(ToolError::Failed(format!(
            "{} is {content_type} ({} bytes), which this tool does not read; it reads HTML, JSON and text",
            response.url,
            response.body.len()
        )));
    };
    let (text, truncated) = clip_chars(&text, max_chars);
    Ok(json!({
        "url": response.url,
        "status": response.status,
        "content_type": content_type,
        "title": title,
        "text": text,
        "truncated": truncated,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// What to search for.
    query: String,
    /// Most results to return (default 8, at most 20).
    max_results: Option<usize>,
}

fn search(args: SearchArgs) -> Result<Value, ToolError> {
    let Some(endpoint) = std::fs::read_to_string(SEARCH_URL_FILE)
        .ok()
        .and_then(|text| text.lines().next().map(|line| line.trim().to_owned()))
        .filter(|line| !line.is_empty())
    else {
        return Err(ToolError::Failed(
            "no search endpoint is configured: the operator writes the search API's URL (a SearXNG \
             instance's, e.g. https://search.example.org/search) into skill-data/web/search-url in \
             the data home and grants its host to the web skill"
                .into(),
        ));
    };
    if args.query.trim().is_empty() {
        return Err(ToolError::InvalidArguments("the query is empty".into()));
    }
    let max_results = args
        .max_results
        .unwrap_or(DEFAULT_RESULTS)
        .clamp(1, MAX_RESULTS);
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let url = format!(
        "{endpoint}{separator}q={}&format=json",
        percent_encode(args.query.trim())
    );
    let response = http::get(url)
        .header("Accept", "application/json")
        .send()?
        .error_for_status()?;
    let body: Value = response.json()?;
    let results: Vec<Value> = body["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|result| {
            let url = result["url"].as_str()?;
            Some(json!({
                "title": result["title"].as_str().unwrap_or_default(),
                "url": url,
                "snippet": clip_chars(result["content"].as_str().unwrap_or_default(), 500).0,
            }))
        })
        .take(max_results)
        .collect();
    Ok(json!({ "results": results }))
}

/// At most `max` characters of `text`, and whether it was cut.
fn clip_chars(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (text[..end].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

/// A query string value: unreserved characters as they are, the rest
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn tools() -> Toolset {
    Toolset::new()
        .tool(
            "fetch",
            "Read a web page (http:// or https://) as text: HTML as Markdown-like text with its title, \
             JSON pretty-printed, plain text as it is. Only hosts the operator granted can be reached.",
            fetch,
        )
        .tool(
            "search",
            "Search the web through the search API the operator configured; returns titles, URLs and snippets.",
            search,
        )
}

talaria_sdk::export_skill!(tools);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode("rust wasi/http & more"),
            "rust%20wasi%2Fhttp%20%26%20more"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip_chars("héllo", 2), ("hé".to_owned(), true));
        assert_eq!(clip_chars("hé", 2), ("hé".to_owned(), false));
    }
}
