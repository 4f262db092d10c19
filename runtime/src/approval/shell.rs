//! A shell command line split into the simple commands it would run, so
//! that chaining (`true; rm -rf /`), pipes, substitutions (`$(...)`,
//! backticks, `<(...)`), wrappers (`sudo`, `env`, `timeout`, `xargs`, ...)
//! and nested shells (`bash -c "..."`, `eval`) cannot hide a command from
//! the rules.
//!
//! This is not a shell: it does not expand variables or globs. It errs on
//! the side of finding more commands than the shell would run (a word that
//! only looks like a command still gets checked), never fewer.

/// One command as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    /// The program and its arguments, quotes removed.
    pub words: Vec<String>,
    /// Files written by output redirections (`>`, `>>`, `&>`, `2>`, ...).
    pub writes_to: Vec<String>,
}

impl SimpleCommand {
    /// The program's name without its directory (`/bin/rm` → `rm`).
    pub fn program(&self) -> &str {
        self.words
            .first()
            .map(|word| word.rsplit('/').next().unwrap_or(word))
            .unwrap_or_default()
    }

    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or_default()
    }

    /// The words joined by single spaces, as allowlist patterns see it.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// Why a command line cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the command is longer than {MAX_COMMAND_BYTES} bytes")]
    TooLong,
    #[error("the command nests shells or substitutions more than {MAX_DEPTH} deep")]
    TooDeep,
}

pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
const MAX_DEPTH: usize = 12;

/// Every simple command `line` would run, wrappers and nested shells
/// unwrapped (the wrapper is kept too, so `sudo` itself can be judged).
pub fn commands(line: &str) -> Result<Vec<SimpleCommand>, ParseError> {
    if line.len() > MAX_COMMAND_BYTES {
        return Err(ParseError::TooLong);
    }
    let mut out = Vec::new();
    parse(line, 0, &mut out)?;
    Ok(out)
}

fn parse(line: &str, depth: usize, out: &mut Vec<SimpleCommand>) -> Result<(), ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    let mut nested = Vec::new();
    for command in split(line, &mut nested) {
        unwrap(command, depth, out)?;
    }
    for inner in nested {
        parse(&inner, depth + 1, out)?;
    }
    Ok(())
}

/// Words and commands as they are read.
#[derive(Default)]
struct Splitter {
    commands: Vec<SimpleCommand>,
    current: SimpleCommand,
    word: String,
    in_word: bool,
    /// The next word is the target of an output redirection.
    redirect_target: bool,
    /// The next word is an input file (`<`): not an argument.
    input_target: bool,
}

impl Splitter {
    fn end_word(&mut self) {
        if !self.in_word {
            return;
        }
        let finished = std::mem::take(&mut self.word);
        if self.redirect_target {
            self.current.writes_to.push(finished);
            self.redirect_target = false;
        } else if self.input_target {
            self.input_target = false;
        } else {
            self.current.words.push(finished);
        }
        self.in_word = false;
    }

    fn end_command(&mut self) {
        self.end_word();
        if !self.current.words.is_empty() || !self.current.writes_to.is_empty() {
            self.commands.push(std::mem::take(&mut self.current));
        }
        self.redirect_target = false;
        self.input_target = false;
    }
}

/// The command lines of `line`'s simple commands; the text of every
/// substitution goes to `nested`, to be parsed on its own.
fn split(line: &str, nested: &mut Vec<String>) -> Vec<SimpleCommand> {
    let chars: Vec<char> = line.chars().collect();
    let mut state = Splitter::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                state.end_word();
                i += 1;
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                // `&>` redirects both streams; `>&` is handled with `>`.
                if c == '&' && chars.get(i + 1) == Some(&'>') {
                    state.end_word();
                    i += 2;
                    if chars.get(i) == Some(&'>') {
                        i += 1;
                    }
                    state.redirect_target = true;
                    continue;
                }
                state.end_command();
                i += 1;
            }
            '\'' => {
                state.in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    state.word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                state.in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            let next = chars[i + 1];
                            if matches!(next, '"' | '\\' | '$' | '`') {
                                state.word.push(next);
                            } else if next != '\n' {
                                state.word.push('\\');
                                state.word.push(next);
                            }
                            i += 2;
                        }
                        '$' if chars.get(i + 1) == Some(&'(') => {
                            let (inner, end) = balanced(&chars, i + 2);
                            state.word.push_str(&format!("$({inner})"));
                            nested.push(inner);
                            i = end;
                        }
                        '`' => {
                            let (inner, end) = backticks(&chars, i + 1);
                            state.word.push_str(&format!("`{inner}`"));
                            nested.push(inner);
                            i = end;
                        }
                        other => {
                            state.word.push(other);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                state.in_word = true;
                if let Some(next) = chars.get(i + 1) {
                    if *next != '\n' {
                        state.word.push(*next);
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                state.in_word = true;
                let (inner, end) = balanced(&chars, i + 2);
                state.word.push_str(&format!("$({inner})"));
                nested.push(inner);
                i = end;
            }
            '`' => {
                state.in_word = true;
                let (inner, end) = backticks(&chars, i + 1);
                state.word.push_str(&format!("`{inner}`"));
                nested.push(inner);
                i = end;
            }
            '<' | '>' if chars.get(i + 1) == Some(&'(') => {
                // Process substitution: a command of its own.
                state.end_word();
                let (inner, end) = balanced(&chars, i + 2);
                nested.push(inner);
                i = end;
            }
            '>' | '<' => {
                // A file descriptor number before it belongs to it (`2>`).
                if state.in_word && state.word.chars().all(|d| d.is_ascii_digit()) {
                    state.word.clear();
                    state.in_word = false;
                } else {
                    state.end_word();
                }
                let output = c == '>';
                i += 1;
                // `>>`, `>|`, `<<`, `<>`.
                if matches!(chars.get(i), Some('>' | '|')) && output {
                    i += 1;
                } else if chars.get(i) == Some(&'<') && !output {
                    i += 1;
                    // A here-document's delimiter or a here-string: not a file.
                    if chars.get(i) == Some(&'<') {
                        i += 1;
                    }
                    state.input_target = true;
                    continue;
                }
                // `>&2`, `<&0`, `>&-`: a descriptor, not a file.
                if chars.get(i) == Some(&'&') {
                    i += 1;
                    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                        i += 1;
                    }
                    continue;
                }
                if output {
                    state.redirect_target = true;
                } else {
                    state.input_target = true;
                }
            }
            '{' | '}' if !state.in_word => {
                // Group braces are reserved words: `{ rm -rf /; }`.
                let alone = chars
                    .get(i + 1)
                    .is_none_or(|next| next.is_whitespace() || *next == ';');
                if alone || c == '}' {
                    state.end_command();
                    i += 1;
                } else {
                    state.in_word = true;
                    state.word.push(c);
                    i += 1;
                }
            }
            '#' if !state.in_word => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            other => {
                state.in_word = true;
                state.word.push(other);
                i += 1;
            }
        }
    }
    state.end_command();
    state.commands
}

/// The text up to the `)` that closes a `(` just before `start`, and the
/// index after it. Quotes inside are skipped over; an unclosed one runs to
/// the end (and is still checked).
fn balanced(chars: &[char], start: usize) -> (String, usize) {
    let mut depth = 1;
    let mut i = start;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' && q == '"' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '\\' => i += 1,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return (chars[start..i].iter().collect(), i + 1);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    (
        chars[start.min(chars.len())..].iter().collect(),
        chars.len(),
    )
}

/// The text up to the next unescaped backtick, and the index after it.
fn backticks(chars: &[char], start: usize) -> (String, usize) {
    let mut inner = String::new();
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                inner.push(chars[i + 1]);
                i += 2;
            }
            '`' => return (inner, i + 1),
            c => {
                inner.push(c);
                i += 1;
            }
        }
    }
    (inner, chars.len())
}

/// Programs that run the command given after their own options.
fn wrapper_arguments(program: &str) -> Option<&'static [&'static str]> {
    // For each wrapper: its options that take a value.
    Some(match program {
        "sudo" | "doas" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
        "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
        "nohup" | "command" | "builtin" | "exec" | "time" | "setsid" | "unbuffer" => &[],
        "nice" => &["-n", "--adjustment"],
        "ionice" => &["-c", "-n", "-p", "-t"],
        "timeout" => &["-s", "--signal", "-k", "--kill-after"],
        "stdbuf" => &["-i", "-o", "-e"],
        "xargs" => &[
            "-I",
            "-i",
            "-n",
            "-P",
            "-L",
            "-l",
            "-d",
            "-E",
            "-e",
            "-s",
            "-a",
            "--arg-file",
            "--delimiter",
            "--max-args",
            "--max-procs",
            "--replace",
        ],
        "chroot" => &["--userspec", "--groups"],
        "watch" => &["-n", "--interval", "-d"],
        "flock" => &["-w", "-E", "-c"],
        _ => return None,
    })
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish",
];

/// Add `command` and what it wraps (`sudo X`, `env A=1 X`, `bash -c "X"`).
fn unwrap(
    mut command: SimpleCommand,
    depth: usize,
    out: &mut Vec<SimpleCommand>,
) -> Result<(), ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    // Leading assignments (`PATH=/x rm ...`) are not the program.
    let assignments = command
        .words
        .iter()
        .take_while(|word| is_assignment(word))
        .count();
    command.words.drain(..assignments);
    if command.words.is_empty() {
        if !command.writes_to.is_empty() {
            out.push(command);
        }
        return Ok(());
    }
    let program = command.program().to_owned();
    if let Some(valued) = wrapper_arguments(&program) {
        let mut rest = command.args().iter().peekable();
        let mut skipped = 0;
        while let Some(word) = rest.peek().copied() {
            let is_option = word.starts_with('-') && word.len() > 1;
            let is_env = program == "env" && is_assignment(word);
            if !(is_option || is_env) {
                break;
            }
            let takes_value = valued.contains(&word.as_str());
            rest.next();
            skipped += 1;
            if takes_value {
                rest.next();
                skipped += 1;
            }
            if *word == "--" {
                break;
            }
        }
        // `timeout DURATION CMD`, `chroot DIR CMD`: one more positional.
        let positional = usize::from(matches!(program.as_str(), "timeout" | "chroot"));
        let start = 1 + skipped + positional;
        let inner_words = command.words.get(start..).unwrap_or_default().to_vec();
        let writes_to = command.writes_to.clone();
        out.push(command);
        if !inner_words.is_empty() {
            unwrap(
                SimpleCommand {
                    words: inner_words,
                    writes_to,
                },
                depth + 1,
                out,
            )?;
        }
        return Ok(());
    }
    if SHELLS.contains(&program.as_str()) {
        // `bash -c "CMD"`, `sh -ec "CMD"`, `busybox sh -c "CMD"`.
        let args = command.args();
        let payload = args
            .iter()
            .position(|arg| {
                arg.starts_with('-') && !arg.starts_with("--") && arg[1..].contains('c')
            })
            .and_then(|index| args.get(index + 1))
            .cloned();
        if program == "busybox" && args.first().is_some_and(|first| !first.starts_with('-')) {
            let inner = SimpleCommand {
                words: args.to_vec(),
                writes_to: command.writes_to.clone(),
            };
            out.push(command);
            return unwrap(inner, depth + 1, out);
        }
        out.push(command);
        if let Some(payload) = payload {
            parse(&payload, depth + 1, out)?;
        }
        return Ok(());
    }
    if program == "eval" {
        let payload = command.args().join(" ");
        out.push(command);
        return parse(&payload, depth + 1, out);
    }
    out.push(command);
    Ok(())
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs(line: &str) -> Vec<String> {
        commands(line)
            .unwrap()
            .iter()
            .map(|command| command.text())
            .collect()
    }

    #[test]
    fn chains_pipes_and_groups_are_split() {
        let cases: &[(&str, &[&str])] = &[
            ("ls -la", &["ls -la"]),
            ("true; rm -rf /", &["true", "rm -rf /"]),
            ("a && b || c | d & e", &["a", "b", "c", "d", "e"]),
            ("a\nb", &["a", "b"]),
            ("(cd /tmp && rm -rf x)", &["cd /tmp", "rm -rf x"]),
            ("{ rm -rf /; }", &["rm -rf /"]),
            ("echo 'a; rm -rf /'", &["echo a; rm -rf /"]),
            ("echo \"a\\\"b\"", &["echo a\"b"]),
            ("echo a # ; rm -rf /", &["echo a"]),
            ("r\\m -rf /", &["rm -rf /"]),
            ("'rm' -rf /", &["rm -rf /"]),
            ("echo {a,b}", &["echo {a,b}"]),
        ];
        for (line, expected) in cases {
            assert_eq!(programs(line), *expected, "{line}");
        }
    }

    #[test]
    fn substitutions_are_commands_too() {
        let cases: &[(&str, &[&str])] = &[
            ("echo $(rm -rf /)", &["echo $(rm -rf /)", "rm -rf /"]),
            (
                "echo \"$(mkfs /dev/sda)\"",
                &["echo $(mkfs /dev/sda)", "mkfs /dev/sda"],
            ),
            ("echo `reboot`", &["echo `reboot`", "reboot"]),
            ("diff <(ls a) <(ls b)", &["diff", "ls a", "ls b"]),
            (
                "echo $(echo $(halt))",
                &["echo $(echo $(halt))", "echo $(halt)", "halt"],
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(programs(line), *expected, "{line}");
        }
    }

    #[test]
    fn wrappers_and_nested_shells_are_unwrapped() {
        let cases: &[(&str, &[&str])] = &[
            ("sudo rm -rf /", &["sudo rm -rf /", "rm -rf /"]),
            (
                "sudo -u root -- rm -rf /",
                &["sudo -u root -- rm -rf /", "rm -rf /"],
            ),
            (
                "env A=1 B=2 mkfs.ext4 /dev/sda1",
                &["env A=1 B=2 mkfs.ext4 /dev/sda1", "mkfs.ext4 /dev/sda1"],
            ),
            ("PATH=/x rm -rf /", &["rm -rf /"]),
            (
                "timeout -s KILL 5 reboot",
                &["timeout -s KILL 5 reboot", "reboot"],
            ),
            (
                "nohup nice -n 5 halt",
                &["nohup nice -n 5 halt", "nice -n 5 halt", "halt"],
            ),
            (
                "find . | xargs -I{} rm -rf {}",
                &["find .", "xargs -I{} rm -rf {}", "rm -rf {}"],
            ),
            (
                "bash -c \"mkfs /dev/sda\"",
                &["bash -c mkfs /dev/sda", "mkfs /dev/sda"],
            ),
            (
                "sh -ec 'true; reboot'",
                &["sh -ec true; reboot", "true", "reboot"],
            ),
            (
                "/bin/sh -c \"bash -c 'halt'\"",
                &["/bin/sh -c bash -c 'halt'", "bash -c halt", "halt"],
            ),
            ("eval 'rm -rf /'", &["eval rm -rf /", "rm -rf /"]),
            ("busybox rm -rf /", &["busybox rm -rf /", "rm -rf /"]),
        ];
        for (line, expected) in cases {
            assert_eq!(programs(line), *expected, "{line}");
        }
    }

    #[test]
    fn redirections_name_the_files_written() {
        let writes = |line: &str| -> Vec<String> {
            commands(line)
                .unwrap()
                .into_iter()
                .flat_map(|command| command.writes_to)
                .collect()
        };
        assert_eq!(writes("echo x > /etc/passwd"), ["/etc/passwd"]);
        assert_eq!(writes("echo x>>~/.bashrc"), ["~/.bashrc"]);
        assert_eq!(writes("cmd 2>/dev/sda"), ["/dev/sda"]);
        assert_eq!(writes("cmd &> out.log"), ["out.log"]);
        assert_eq!(writes("cmd >&2"), Vec::<String>::new());
        assert_eq!(writes("cat < /etc/shadow"), Vec::<String>::new());
        assert_eq!(writes("cat <<EOF"), Vec::<String>::new());
        assert_eq!(programs("cat < in > out"), ["cat"]);
    }

    #[test]
    fn unbounded_input_is_refused_not_parsed() {
        assert_eq!(
            commands(&"a".repeat(MAX_COMMAND_BYTES + 1)),
            Err(ParseError::TooLong)
        );
        let deep = format!("{}halt{}", "$(".repeat(40), ")".repeat(40));
        assert_eq!(commands(&deep), Err(ParseError::TooDeep));
        // Unclosed quotes and substitutions are still read to the end.
        assert!(programs("echo \"$(reboot").contains(&"reboot".to_owned()));
    }
}
