//! A component importing `talaria:skill/host@0.1.0` with a function this
//! host does not have. Loading it must fail with an error naming that
//! function, not only "function implementation is missing".

wit_bindgen::generate!({
    inline: "
        package talaria:skill@0.1.0;

        interface types {
            record tool { name: string, description: string, parameters: string }
            variant tool-error { invalid-arguments(string), failed(string), denied(string) }
        }

        interface host {
            vault-secret: func(name: string) -> string;
        }

        interface tools {
            use types.{tool, tool-error};
            %list: func() -> list<tool>;
            call: func(name: string, arguments: string) -> result<string, tool-error>;
        }

        world skill {
            import host;
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
        Ok(talaria::skill::host::vault_secret("root-password"))
    }
}

export!(Skill);
