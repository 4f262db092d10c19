//! A component that claims the next major version of the skill contract. The
//! host must refuse it at load time and name both versions.

wit_bindgen::generate!({
    inline: "
        package talaria:skill@0.2.0;

        interface tools {
            %list: func() -> list<string>;
        }

        world skill {
            export tools;
        }
    ",
});

struct Skill;

impl exports::talaria::skill::tools::Guest for Skill {
    fn list() -> Vec<String> {
        Vec::new()
    }
}

export!(Skill);
