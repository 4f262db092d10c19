use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ToolError;

type Handler = Box<dyn Fn(&str) -> Result<String, ToolError>>;

struct Tool {
    name: &'static str,
    description: &'static str,
    parameters: fn() -> String,
    handler: Handler,
}

/// The tools a skill exports, built once per call by the function given to
/// [`export_skill!`](crate::export_skill).
#[derive(Default)]
pub struct Toolset {
    tools: Vec<Tool>,
}

impl Toolset {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tool. `name` must be unique in the skill (lowercase letters,
    /// digits, `-`, `_`); `description` tells the model what the tool does
    /// and when to use it. The argument schema is derived from `A`.
    pub fn tool<A, R, F>(
        mut self,
        name: &'static str,
        description: &'static str,
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema,
        R: Serialize,
        F: Fn(A) -> Result<R, ToolError> + 'static,
    {
        self.tools.push(Tool {
            name,
            description,
            parameters: schema_of::<A>,
            handler: Box::new(move |arguments| {
                let arguments = parse_arguments::<A>(arguments)?;
                render_result(&handler(arguments)?)
            }),
        });
        self
    }

    /// `(name, description, JSON Schema)` of every tool, in insertion order.
    pub fn descriptions(&self) -> impl Iterator<Item = (&'static str, &'static str, String)> + '_ {
        self.tools
            .iter()
            .map(|tool| (tool.name, tool.description, (tool.parameters)()))
    }

    /// Call the tool `name` with JSON `arguments`.
    pub fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError> {
        let tool = self
            .tools
            .iter()
            .find(|tool| tool.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.tools.iter().map(|tool| tool.name).collect();
                ToolError::InvalidArguments(format!(
                    "no tool named `{name}`; this skill has: {}",
                    known.join(", ")
                ))
            })?;
        (tool.handler)(arguments)
    }
}

fn schema_of<A: JsonSchema>() -> String {
    let mut schema = schemars::schema_for!(A);
    // The meta-schema URL only costs the model tokens.
    schema.remove("$schema");
    schema.to_value().to_string()
}

fn parse_arguments<A: DeserializeOwned>(arguments: &str) -> Result<A, ToolError> {
    // Models often send "" for tools without parameters.
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(arguments).map_err(ToolError::invalid_arguments)
}

/// A result that serialises to a JSON string goes to the model as plain text;
/// anything else as compact JSON.
fn render_result<R: Serialize>(result: &R) -> Result<String, ToolError> {
    match serde_json::to_value(result) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        Ok(value) => Ok(value.to_string()),
        Err(error) => Err(ToolError::failed(format!(
            "could not serialise the result: {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Arguments for `add`.
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct AddArgs {
        /// First term.
        a: i64,
        /// Second term.
        b: i64,
    }

    #[derive(Deserialize, JsonSchema)]
    struct NoArgs {}

    fn toolset() -> Toolset {
        Toolset::new()
            .tool("add", "Add two integers.", |args: AddArgs| {
                Ok(args.a + args.b)
            })
            .tool("greet", "Say hello.", |_: NoArgs| Ok("hello"))
            .tool("fail", "Always fails.", |_: NoArgs| -> Result<(), _> {
                Err(ToolError::failed("it broke"))
            })
    }

    #[test]
    fn schema_is_derived_from_the_argument_type() {
        let (name, description, schema) = toolset().descriptions().next().unwrap();
        assert_eq!((name, description), ("add", "Add two integers."));
        let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["a"]["type"], "integer");
        assert_eq!(schema["properties"]["b"]["description"], "Second term.");
        assert_eq!(schema["required"], serde_json::json!(["a", "b"]));
        assert!(schema.get("$schema").is_none());
    }

    #[test]
    fn results_are_json_except_plain_strings() {
        let tools = toolset();
        assert_eq!(tools.call("add", r#"{"a": 2, "b": 40}"#).unwrap(), "42");
        assert_eq!(tools.call("greet", "").unwrap(), "hello");
    }

    #[test]
    fn bad_arguments_carry_the_serde_message() {
        let error = toolset()
            .call("add", r#"{"a": "two", "b": 1}"#)
            .unwrap_err();
        let ToolError::InvalidArguments(message) = error else {
            panic!("expected invalid-arguments, got {error:?}");
        };
        assert!(
            message.contains("invalid type: string \"two\", expected i64"),
            "{message}"
        );

        let error = toolset().call("add", r#"{"a": 1}"#).unwrap_err();
        assert_eq!(
            error,
            ToolError::InvalidArguments("missing field `b` at line 1 column 8".into())
        );

        let error = toolset().call("add", "not json").unwrap_err();
        assert!(matches!(error, ToolError::InvalidArguments(_)), "{error:?}");
    }

    #[test]
    fn unknown_tool_lists_the_known_ones() {
        let error = toolset().call("sub", "{}").unwrap_err();
        assert_eq!(
            error,
            ToolError::InvalidArguments(
                "no tool named `sub`; this skill has: add, greet, fail".into()
            )
        );
    }

    #[test]
    fn tool_errors_pass_through() {
        assert_eq!(
            toolset().call("fail", "{}").unwrap_err(),
            ToolError::failed("it broke")
        );
    }

    #[test]
    fn permission_denied_io_errors_become_denied() {
        let denied: ToolError = std::io::Error::from(std::io::ErrorKind::PermissionDenied).into();
        assert!(matches!(denied, ToolError::Denied(_)));
        let missing: ToolError = std::io::Error::from(std::io::ErrorKind::NotFound).into();
        assert!(matches!(missing, ToolError::Failed(_)));
    }
}
