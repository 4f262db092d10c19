//! A component that imports an interface no Talaria host provides. Loading it
//! must fail with an error naming that import.

wit_bindgen::generate!({
    inline: "
        package talaria:skill@0.1.0;

        interface vault {
            secret: func(name: string) -> string;
        }

        interface types {
            record tool { name: string, description: string, parameters: string }
            variant tool-error { invalid-arguments(string), failed(string), denied(string) }
        }

        interface tools {
            use types.{tool, tool-error};
            %list: func() -> list<tool>;
            call: func(name: string, arguments: string) -> result<string, tool-error>;
        }

        world skill {
            import vault;
            export tools;
        }
    ",
});

use exports::talaria::skill::tools::{Guest, Tool, ToolError};

struct Skill;

impl Guest for Skill {
    fn list() -> Vec<Tool> {
        Vec::new()
    }

    fn call(_name: String, _arguments: String) -> Result<String, ToolError> {
        Ok(talaria::skill::vault::secret("root-password"))
    }
}

export!(Skill);
