//! The `json` skill: JSONPath queries (RFC 9535), formatting and JSON Schema
//! validation of documents passed in the arguments. Pure functions, no file
//! system.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::ser::{PrettyFormatter, Serializer};
use serde_json::value::RawValue;
use serde_json_path::JsonPath;
use talaria_sdk::{Capped, ToolError, Toolset, bounded_count, clip, clip_with_note};

/// Outputs stay below the host's 1 MiB cap, leaving room for a note.
const MAX_OUTPUT_BYTES: usize = 900 * 1024;
const DEFAULT_MAX_RESULTS: usize = 1000;
const MAX_RESULTS_LIMIT: usize = 10_000;
const DEFAULT_MAX_ERRORS: usize = 50;
const MAX_ERRORS_LIMIT: usize = 1000;
/// Validation messages quote the offending value; a whole sub-document in a
/// message helps nobody, so long messages drop the value.
const MAX_MESSAGE_BYTES: usize = 300;
const DEFAULT_INDENT: usize = 2;
const MAX_INDENT: usize = 8;

/// How a JSON document may be given: as a JSON value, or as a string holding
/// JSON text (read from a file, say), which is parsed.
const DOCUMENT_HELP: &str =
    "pass the document as a JSON value, or as a string containing valid JSON text";

/// A document argument exactly as the model wrote it. Kept raw rather than
/// as a [`Value`] because `Value` sorts object keys, and `format` must keep
/// the document's own order (the `preserve_order` feature of serde_json is
/// not an option: Cargo would turn it on for every crate built alongside).
type RawDocument = Box<RawValue>;

// ---------------------------------------------------------------- query

/// Arguments of `query`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    /// The JSON document to query, as a JSON value. A string is parsed as JSON
    /// text, so the raw text of a file works too (to query a document that
    /// is itself a string, pass it encoded, e.g. "\"text\"").
    #[schemars(with = "Value")]
    document: RawDocument,
    /// JSONPath expression (RFC 9535), e.g. `$.store.book[*].author`,
    /// `$..price`, `$.items[?@.price < 10]`, `$.list[-1]`.
    path: String,
    /// Return `{"path": ..., "value": ...}` objects giving each node's
    /// normalized location instead of the bare values.
    #[serde(default)]
    with_paths: bool,
    /// Most nodes to return (default 1000, at most 10000).
    #[serde(default)]
    max_results: Option<usize>,
}

#[derive(Serialize)]
struct LocatedValue<'a> {
    path: String,
    value: &'a Value,
}

fn query(args: QueryArgs) -> Result<String, ToolError> {
    let max_results = bounded_count(
        "max_results",
        args.max_results,
        DEFAULT_MAX_RESULTS,
        MAX_RESULTS_LIMIT,
    )?;
    let document = parse_document(&args.document, "document")?;
    run_query(
        &document,
        &args.path,
        args.with_paths,
        max_results,
        MAX_OUTPUT_BYTES,
    )
}

/// The matched nodes as a compact JSON array. When the array would hold too
/// many nodes or bytes it is closed early and a note on the next line says
/// so, keeping the array itself valid JSON.
fn run_query(
    document: &Value,
    path: &str,
    with_paths: bool,
    max_results: usize,
    max_bytes: usize,
) -> Result<String, ToolError> {
    let path = JsonPath::parse(path).map_err(|error| {
        ToolError::invalid_arguments(format!(
            "invalid JSONPath ({error}); paths start with `$`, e.g. `$.items[0].name`, `$..id` or \
             `$.items[?@.price < 10]`"
        ))
    })?;
    let nodes = path.query_located(document);
    let total = nodes.len();
    let mut output = String::from("[");
    let mut shown = 0;
    for node in nodes.iter() {
        if shown == max_results {
            break;
        }
        let encoded = if with_paths {
            serde_json::to_string(&LocatedValue {
                path: node.location().to_string(),
                value: node.node(),
            })
        } else {
            serde_json::to_string(node.node())
        }
        .map_err(|error| ToolError::failed(format!("could not encode a result: {error}")))?;
        if output.len() + encoded.len() + 2 > max_bytes {
            break;
        }
        if shown > 0 {
            output.push(',');
        }
        output.push_str(&encoded);
        shown += 1;
    }
    output.push(']');
    if shown < total {
        output.push_str(&format!(
            "\n[truncated: showing {shown} of {total} nodes; narrow the path (e.g. index or filter), \
             or query for smaller parts of each node]"
        ));
    }
    Ok(output)
}

// ---------------------------------------------------------------- format

/// Arguments of `format`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FormatArgs {
    /// The JSON document, as a JSON value or as a string containing JSON
    /// text (a string is parsed).
    #[schemars(with = "Value")]
    document: RawDocument,
    /// `pretty` (indented, the default) or `minify` (no whitespace).
    #[serde(default)]
    style: Style,
    /// Spaces per indentation level for `pretty` (default 2, at most 8).
    #[serde(default)]
    indent: Option<usize>,
    /// Sort object keys at every level. Otherwise the document's key order
    /// and number spelling are kept as written.
    #[serde(default)]
    sort_keys: bool,
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
// Inline, so the model sees the choices right at the argument.
#[schemars(inline)]
enum Style {
    #[default]
    Pretty,
    Minify,
}

fn format(args: FormatArgs) -> Result<String, ToolError> {
    let indent = match (args.style, args.indent) {
        (Style::Minify, Some(_)) => {
            return Err(ToolError::invalid_arguments(
                "`indent` applies only to `pretty`; drop it or set `style` to `pretty`",
            ));
        }
        (_, Some(indent)) if indent > MAX_INDENT => {
            return Err(ToolError::invalid_arguments(format!(
                "`indent` must be at most {MAX_INDENT}"
            )));
        }
        (_, indent) => indent.unwrap_or(DEFAULT_INDENT),
    };
    let indent = match args.style {
        Style::Pretty => Some(indent),
        Style::Minify => None,
    };
    let text = if args.sort_keys {
        // `Value` keeps object keys sorted, which is exactly what is asked.
        render(&parse_document(&args.document, "document")?, indent)?
    } else {
        let text = document_text(&args.document, "document")?;
        serde_json::from_str::<IgnoredAny>(&text).map_err(|error| not_json("document", &error))?;
        relayout(&text, indent)
    };
    Ok(truncate_output(text, MAX_OUTPUT_BYTES))
}

/// Re-lay out valid JSON text token by token, keeping key order, duplicate
/// keys and the spelling of numbers and strings exactly as written.
/// `indent`: spaces per level, or `None` to minify. The layout matches
/// serde_json's pretty printer, empty containers included.
fn relayout(text: &str, indent: Option<usize>) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut depth = 0;
    let new_line = |output: &mut String, depth: usize| {
        if let Some(indent) = indent {
            output.push('\n');
            output.extend(std::iter::repeat_n(' ', indent * depth));
        }
    };
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => {
                let end = string_end(bytes, index);
                output.push_str(&text[index..end]);
                index = end;
                continue;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let next = next_token(bytes, index + 1);
                if bytes.get(next) == Some(&close) {
                    output.push(char::from(open));
                    output.push(char::from(close));
                    index = next + 1;
                    continue;
                }
                output.push(char::from(open));
                depth += 1;
                new_line(&mut output, depth);
            }
            close @ (b'}' | b']') => {
                depth -= 1;
                new_line(&mut output, depth);
                output.push(char::from(close));
            }
            b',' => {
                output.push(',');
                new_line(&mut output, depth);
            }
            b':' => {
                output.push(':');
                if indent.is_some() {
                    output.push(' ');
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            // Numbers, `true`, `false` and `null`: ASCII outside strings is
            // guaranteed by the validation before.
            other => output.push(char::from(other)),
        }
        index += 1;
    }
    output
}

/// Index just past the string starting at `start` (its opening quote).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return index + 1,
            _ => index += 1,
        }
    }
    bytes.len()
}

/// Index of the first non-whitespace byte at or after `from`.
fn next_token(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(bytes.len(), |offset| from + offset)
}

fn render(document: &Value, indent: Option<usize>) -> Result<String, ToolError> {
    let mut bytes = Vec::new();
    let result = match indent {
        None => serde_json::to_writer(&mut bytes, document),
        Some(indent) => {
            let indent = " ".repeat(indent);
            let formatter = PrettyFormatter::with_indent(indent.as_bytes());
            document.serialize(&mut Serializer::with_formatter(&mut bytes, formatter))
        }
    };
    result.map_err(|error| ToolError::failed(format!("could not encode the document: {error}")))?;
    String::from_utf8(bytes)
        .map_err(|error| ToolError::failed(format!("encoded document is not UTF-8: {error}")))
}

fn truncate_output(text: String, max_bytes: usize) -> String {
    clip_with_note(
        text,
        max_bytes,
        "truncated",
        "use `query` to format a part of the document",
    )
}

// ---------------------------------------------------------------- validate

/// Arguments of `validate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ValidateArgs {
    /// The JSON document to check, as a JSON value or as a string containing
    /// JSON text (a string is parsed).
    #[schemars(with = "Value")]
    document: RawDocument,
    /// The JSON Schema, as a JSON value or a string containing it. The draft
    /// comes from its `$schema` (2020-12 when absent; drafts 4, 6, 7,
    /// 2019-09 and 2020-12 are known). Only local `$ref`s resolve: external
    /// schemas are not fetched.
    #[schemars(with = "Value")]
    schema: RawDocument,
    /// Also check `format` keywords (`email`, `date-time`, `uri`...), which
    /// recent drafts treat as annotations only.
    #[serde(default)]
    check_formats: bool,
    /// Most errors to report (default 50, at most 1000).
    #[serde(default)]
    max_errors: Option<usize>,
}

#[derive(Serialize, Debug)]
struct Validation {
    valid: bool,
    errors: Vec<Violation>,
    /// True when more errors exist than were reported.
    truncated: bool,
}

#[derive(Serialize, Debug)]
struct Violation {
    /// JSON Pointer to the offending value in the document; "" is the whole
    /// document.
    instance_path: String,
    /// JSON Pointer to the keyword in the schema that failed.
    schema_path: String,
    keyword: String,
    message: String,
}

fn validate(args: ValidateArgs) -> Result<Validation, ToolError> {
    let max_errors = bounded_count(
        "max_errors",
        args.max_errors,
        DEFAULT_MAX_ERRORS,
        MAX_ERRORS_LIMIT,
    )?;
    let document = parse_document(&args.document, "document")?;
    let schema = parse_document(&args.schema, "schema")?;
    validate_document(&document, &schema, args.check_formats, max_errors)
}

fn validate_document(
    document: &Value,
    schema: &Value,
    check_formats: bool,
    max_errors: usize,
) -> Result<Validation, ToolError> {
    let validator = jsonschema::options()
        .should_validate_formats(check_formats)
        .build(schema)
        .map_err(|error| {
            let location = error.instance_path();
            let at = if location.as_str().is_empty() {
                String::new()
            } else {
                format!(" (at `{location}` in the schema)")
            };
            ToolError::invalid_arguments(format!(
                "`schema` is not a usable JSON Schema{at}: {}",
                bounded_message(&error)
            ))
        })?;
    let mut errors = Capped::new(max_errors);
    for error in validator.iter_errors(document) {
        let kept = errors.push(Violation {
            instance_path: error.instance_path().to_string(),
            schema_path: error.schema_path().to_string(),
            keyword: error.kind().keyword().to_owned(),
            message: bounded_message(&error),
        });
        if kept.is_break() {
            break;
        }
    }
    let (errors, truncated) = errors.into_parts();
    Ok(Validation {
        valid: errors.is_empty(),
        errors,
        truncated,
    })
}

fn bounded_message(error: &jsonschema::ValidationError<'_>) -> String {
    let message = error.to_string();
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    clip(
        &error.masked_with("the value").to_string(),
        MAX_MESSAGE_BYTES,
    )
}

// ---------------------------------------------------------------- shared

/// The JSON text of a document argument. A JSON string argument holds the
/// text (models often have a document as text, from a file or another tool);
/// any other value is its own text.
fn document_text<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, ToolError> {
    let text = raw.get().trim_start();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|error| {
            ToolError::invalid_arguments(format!("`{field}` is not a valid JSON string: {error}"))
        })?;
        Ok(Cow::Owned(inner))
    } else {
        Ok(Cow::Borrowed(text))
    }
}

fn parse_document(raw: &RawValue, field: &str) -> Result<Value, ToolError> {
    serde_json::from_str(&document_text(raw, field)?).map_err(|error| not_json(field, &error))
}

/// Only a string argument can hold invalid JSON: anything else got through
/// the argument parser.
fn not_json(field: &str, error: &serde_json::Error) -> ToolError {
    ToolError::invalid_arguments(format!(
        "`{field}` is a string, so it was read as JSON text, but it is not valid JSON ({error}); {DOCUMENT_HELP}"
    ))
}

fn tools() -> Toolset {
    Toolset::new()
        .tool(
            "query",
            "Select parts of a JSON document with a JSONPath expression (RFC 9535, e.g. `$.items[*].name`, \
             `$..id`, `$.items[?@.price < 10]`); returns the matched nodes as a JSON array.",
            query,
        )
        .tool(
            "format",
            "Pretty-print or minify a JSON document, optionally sorting object keys; also checks that the text \
             is valid JSON.",
            format,
        )
        .tool(
            "validate",
            "Validate a JSON document against a JSON Schema (drafts 4 to 2020-12); returns `valid` and every \
             violation with its instance path, schema path and message.",
            validate,
        )
}

talaria_sdk::export_skill!(tools);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> Value {
        json!({
            "store": {
                "book": [
                    {"title": "Sayings", "price": 8.95, "tags": ["old"]},
                    {"title": "Sword", "price": 12.99},
                    {"title": "Moby", "price": 8.99, "isbn": "0-553"}
                ],
                "bicycle": {"color": "red", "price": 399}
            }
        })
    }

    fn query_all(path: &str) -> String {
        run_query(&store(), path, false, 100, MAX_OUTPUT_BYTES).unwrap()
    }

    #[test]
    fn query_returns_matched_nodes_as_an_array() {
        assert_eq!(
            query_all("$.store.book[*].title"),
            r#"["Sayings","Sword","Moby"]"#
        );
        assert_eq!(
            query_all("$.store.book[?@.price < 10].title"),
            r#"["Sayings","Moby"]"#
        );
        assert_eq!(query_all("$.store.book[-1].isbn"), r#"["0-553"]"#);
        assert_eq!(query_all("$.nothing"), "[]");
        let prices: Vec<f64> = serde_json::from_str(&query_all("$..price")).unwrap();
        assert_eq!(prices.len(), 4);
    }

    #[test]
    fn query_can_return_normalized_paths() {
        let output = run_query(&store(), "$..isbn", true, 100, MAX_OUTPUT_BYTES).unwrap();
        assert_eq!(
            output,
            r#"[{"path":"$['store']['book'][2]['isbn']","value":"0-553"}]"#
        );
    }

    #[test]
    fn query_truncates_with_a_note_after_a_valid_array() {
        let output = run_query(
            &store(),
            "$.store.book[*].title",
            false,
            2,
            MAX_OUTPUT_BYTES,
        )
        .unwrap();
        let (array, note) = output.split_once('\n').unwrap();
        assert_eq!(array, r#"["Sayings","Sword"]"#);
        assert!(note.contains("showing 2 of 3 nodes"), "{note}");

        let output = run_query(&store(), "$.store.book[*].title", false, 100, 20).unwrap();
        let (array, note) = output.split_once('\n').unwrap();
        assert_eq!(array, r#"["Sayings","Sword"]"#);
        assert!(note.contains("showing 2 of 3 nodes"), "{note}");
    }

    #[test]
    fn invalid_paths_say_where() {
        let error = run_query(&store(), "store.book", false, 10, MAX_OUTPUT_BYTES).unwrap_err();
        assert!(matches!(error, ToolError::InvalidArguments(_)));
        assert!(error.message().contains("position 0"), "{error}");
    }

    #[test]
    fn string_documents_are_parsed_as_json_text() {
        let args: QueryArgs =
            serde_json::from_str(r#"{"document": "{\"a\": [1, 2]}", "path": "$.a[1]"}"#).unwrap();
        assert_eq!(query(args).unwrap(), "[2]");
        assert_eq!(
            parse_document(&raw(r#""\"text\"""#), "document").unwrap(),
            json!("text")
        );
        let error = parse_document(&raw(r#""{not json""#), "schema").unwrap_err();
        assert!(
            error.message().starts_with("`schema` is a string"),
            "{error}"
        );
        assert_eq!(
            parse_document(&raw(" [1]"), "document").unwrap(),
            json!([1])
        );
    }

    fn raw(text: &str) -> RawDocument {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    /// Format `document`, given as the JSON text of the argument.
    fn format_text(
        document: &str,
        style: Style,
        indent: Option<usize>,
        sort_keys: bool,
    ) -> Result<String, ToolError> {
        format(FormatArgs {
            document: raw(document),
            style,
            indent,
            sort_keys,
        })
    }

    #[test]
    fn format_keeps_key_order_and_numbers_unless_asked_to_sort() {
        let text = r#"{"b": 1E2, "a": {"d": [1, 2.50], "c": null}}"#;
        assert_eq!(
            format_text(text, Style::Minify, None, false).unwrap(),
            r#"{"b":1E2,"a":{"d":[1,2.50],"c":null}}"#
        );
        assert_eq!(
            format_text(text, Style::Minify, None, true).unwrap(),
            r#"{"a":{"c":null,"d":[1,2.5]},"b":100.0}"#
        );
        // The same document given as a string of JSON text.
        let quoted = serde_json::to_string(text).unwrap();
        assert_eq!(
            format_text(&quoted, Style::Minify, None, false).unwrap(),
            r#"{"b":1E2,"a":{"d":[1,2.50],"c":null}}"#
        );
    }

    #[test]
    fn format_pretty_prints_like_serde_json() {
        let text = r#" {"a": [1, {}, [], {"x": "s p\"a,c{e"}], "b": {"c": true} } "#;
        let value: Value = serde_json::from_str(text).unwrap();
        for indent in [0, 2, 4] {
            let expected = render(&value, Some(indent)).unwrap();
            assert_eq!(
                format_text(text, Style::Pretty, Some(indent), false).unwrap(),
                expected
            );
        }
        assert_eq!(
            format_text(text, Style::Minify, None, false).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(
            format_text(r#"{"a": [1]}"#, Style::Pretty, None, false).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(
            format_text(r#""\"a string document\"""#, Style::Pretty, None, false).unwrap(),
            r#""a string document""#
        );
    }

    #[test]
    fn format_checks_its_options_and_the_text() {
        assert!(format_text("[1]", Style::Pretty, Some(9), false).is_err());
        assert!(format_text("[1]", Style::Minify, Some(2), false).is_err());
        let error = format_text(r#""[1,]""#, Style::Pretty, None, false).unwrap_err();
        assert!(error.message().contains("not valid JSON"), "{error}");
        let error = format_text(r#""[1] 2""#, Style::Pretty, None, false).unwrap_err();
        assert!(error.message().contains("trailing characters"), "{error}");
    }

    #[test]
    fn format_style_is_read_in_lowercase() {
        let args: FormatArgs =
            serde_json::from_str(r#"{"document": 1, "style": "minify"}"#).unwrap();
        assert_eq!(args.style, Style::Minify);
        assert!(
            serde_json::from_str::<FormatArgs>(r#"{"document": 1, "style": "compact"}"#).is_err()
        );
    }

    #[test]
    fn long_outputs_are_truncated_with_a_note() {
        let output = truncate_output("é".repeat(100), 51);
        let (kept, note) = output.split_once('\n').unwrap();
        assert_eq!(kept, "é".repeat(25));
        assert!(note.contains("showing 50 of 200 bytes"), "{note}");
    }

    fn person_schema() -> Value {
        json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "additionalProperties": false
        })
    }

    #[test]
    fn valid_documents_have_no_errors() {
        let result = validate_document(
            &json!({"name": "Ada", "age": 36}),
            &person_schema(),
            false,
            10,
        )
        .unwrap();
        assert!(result.valid);
        assert!(result.errors.is_empty());
    }

    #[test]
    fn every_violation_is_reported_with_its_paths() {
        let document = json!({"age": -1, "tags": ["a", 2], "extra": true});
        let result = validate_document(&document, &person_schema(), false, 10).unwrap();
        assert!(!result.valid);
        assert!(!result.truncated);
        let mut found: Vec<(&str, &str, &str)> = result
            .errors
            .iter()
            .map(|error| {
                (
                    error.instance_path.as_str(),
                    error.schema_path.as_str(),
                    error.keyword.as_str(),
                )
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("", "/additionalProperties", "additionalProperties"),
                ("", "/required", "required"),
                ("/age", "/properties/age/minimum", "minimum"),
                ("/tags/1", "/properties/tags/items/type", "type"),
            ]
        );
        let required = result
            .errors
            .iter()
            .find(|error| error.keyword == "required")
            .unwrap();
        assert!(
            required.message.contains("\"name\""),
            "{}",
            required.message
        );
    }

    #[test]
    fn formats_are_checked_only_on_request() {
        let document = json!({"name": "Ada", "age": 36, "email": "not an address"});
        assert!(
            validate_document(&document, &person_schema(), false, 10)
                .unwrap()
                .valid
        );
        let result = validate_document(&document, &person_schema(), true, 10).unwrap();
        assert_eq!(result.errors[0].instance_path, "/email");
        assert_eq!(result.errors[0].keyword, "format");
    }

    #[test]
    fn error_reports_are_bounded() {
        let schema = json!({"type": "array", "items": {"type": "string"}});
        let result = validate_document(&json!([1, 2, 3, 4]), &schema, false, 2).unwrap();
        assert_eq!(result.errors.len(), 2);
        assert!(result.truncated);

        let big = json!({"blob": "x".repeat(5000)});
        let result = validate_document(&big, &json!({"type": "array"}), false, 10).unwrap();
        assert!(result.errors[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(
            result.errors[0].message.contains("the value"),
            "{}",
            result.errors[0].message
        );
    }

    #[test]
    fn invalid_schemas_are_refused() {
        let error =
            validate_document(&json!(1), &json!({"type": "nonsense"}), false, 10).unwrap_err();
        assert!(matches!(error, ToolError::InvalidArguments(_)));
        assert!(
            error.message().contains("not a usable JSON Schema"),
            "{error}"
        );
    }

    #[test]
    fn drafts_come_from_the_schema() {
        let draft4 = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": true}}
        });
        let result = validate_document(&json!({"n": 5}), &draft4, false, 10).unwrap();
        assert!(!result.valid);
        assert_eq!(result.errors[0].instance_path, "/n");
    }

    #[test]
    fn local_refs_resolve() {
        let schema = json!({
            "$defs": {"positive": {"type": "integer", "exclusiveMinimum": 0}},
            "type": "array",
            "items": {"$ref": "#/$defs/positive"}
        });
        let result = validate_document(&json!([1, 0]), &schema, false, 10).unwrap();
        assert_eq!(result.errors.len(), 1);
        assert_eq!(result.errors[0].instance_path, "/1");
    }

    #[test]
    fn external_refs_are_not_fetched() {
        let schema = json!({"$ref": "https://example.com/schema.json"});
        let error = validate_document(&json!(1), &schema, false, 10).unwrap_err();
        assert!(matches!(error, ToolError::InvalidArguments(_)), "{error:?}");
    }

    #[test]
    fn query_supports_filters_and_functions() {
        assert_eq!(
            query_all("$.store.book[?length(@.tags) == 1].title"),
            r#"["Sayings"]"#
        );
        assert_eq!(
            query_all("$.store.book[?match(@.title, 'S.*') && @.price > 10].title"),
            r#"["Sword"]"#
        );
    }

    #[test]
    fn tool_schemas_describe_the_arguments() {
        let names: Vec<&str> = tools().descriptions().map(|(name, _, _)| name).collect();
        assert_eq!(names, ["query", "format", "validate"]);
        let (_, _, schema) = tools().descriptions().nth(1).unwrap();
        let schema: Value = serde_json::from_str(&schema).unwrap();
        assert_eq!(schema["required"], json!(["document"]));
        assert_eq!(
            schema["properties"]["style"]["enum"],
            json!(["pretty", "minify"])
        );
    }
}
