//! A shell command line split into the simple commands it would run, so
//! that chaining (`true; rm -rf /`), pipes, substitutions (`$(...)`,
//! backticks, `<(...)`), here-documents, reserved words (`if`, `!`,
//! `while`), wrappers (`sudo`, `env`, `timeout`, `xargs`, `ssh`, ...) and
//! nested shells (`bash -c "..."`, `eval`, `find -exec sh -c`, `trap`)
//! cannot hide a command from the rules.
//!
//! This is not a shell: it does not expand variables or globs (a command
//! word that needs expanding is for the rules to judge, see
//! [`SimpleCommand::dynamic_program`]). It errs on the side of finding more
//! commands than the shell would run (a word that only looks like a
//! command still gets checked), never fewer.

/// One command as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    /// The program and its arguments, quotes removed.
    pub words: Vec<String>,
    /// Files written by output redirections (`>`, `>>`, `&>`, `2>`, `<>`,
    /// `>&FILE`, ...).
    pub writes_to: Vec<String>,
    /// Here-strings (`<<< TEXT`) and here-documents fed to it.
    pub stdin_text: Vec<String>,
    /// Its standard input is the previous command's output (`a | b`).
    pub piped: bool,
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

    /// Whether the program's name is only known once the shell expands it
    /// (`$X`, `` `...` ``, `/bin/r?`, `{rm,-rf,/}`, `~user/bin/x`).
    pub fn dynamic_program(&self) -> bool {
        self.words.first().is_some_and(|word| is_dynamic(word))
    }
}

/// Whether the shell would expand `word` into something else.
pub fn is_dynamic(word: &str) -> bool {
    word.contains(['$', '`', '*', '?', '['])
        || (word.contains('{') && word.contains(['}', ',']))
        || word.starts_with('~')
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

/// Reserved words that may start a simple command without being its
/// program (`if rm -rf /; then ...`, `! reboot`, `while ...; do ...`).
const RESERVED: &[&str] = &[
    "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "coproc", "case",
    "esac", "in", "select", "function", "{", "}", "[[", "]]",
];

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
    // `$IFS` is a space unless the command changes it: `rm${IFS}-rf${IFS}/`.
    let line = line
        .replace("${IFS}", " ")
        .replace("$IFS", " ")
        .replace("${IFS%?}", " ");
    let mut nested = Vec::new();
    let mut previous: Option<SimpleCommand> = None;
    for command in split(&line, &mut nested) {
        // `echo CMD | sh`: the text a shell reads from a pipe is a command
        // line of its own.
        if command.piped
            && SHELLS.contains(&command.program())
            && !command.args().iter().any(|arg| !arg.starts_with('-'))
            && let Some(before) = &previous
            && matches!(before.program(), "echo" | "printf")
        {
            nested.push(before.args().join(" "));
        }
        previous = Some(command.clone());
        unwrap(command, depth, out)?;
    }
    for inner in nested {
        parse(&inner, depth + 1, out)?;
    }
    Ok(())
}

/// A here-document waiting for its body (read after the line ends).
struct PendingHeredoc {
    delimiter: String,
    strip_tabs: bool,
    /// A quoted delimiter: the body is not expanded.
    quoted: bool,
    /// The command it feeds, by index, once known.
    command: usize,
}

/// Words and commands as they are read.
#[derive(Default)]
struct Splitter {
    commands: Vec<SimpleCommand>,
    current: SimpleCommand,
    word: String,
    in_word: bool,
    /// The word had quotes (for a here-document's delimiter).
    word_quoted: bool,
    /// The next word is the target of an output redirection.
    redirect_target: bool,
    /// The next word is an input file (`<`): not an argument.
    input_target: bool,
    /// The next word is a here-string.
    here_string: bool,
    /// The next word is a here-document's delimiter (`<<-` strips tabs).
    heredoc_delimiter: Option<bool>,
    heredocs: Vec<PendingHeredoc>,
    /// The next command reads the previous one's output.
    next_piped: bool,
}

impl Splitter {
    fn end_word(&mut self) {
        if !self.in_word {
            return;
        }
        let finished = std::mem::take(&mut self.word);
        let quoted = std::mem::take(&mut self.word_quoted);
        if self.redirect_target {
            self.current.writes_to.push(finished);
            self.redirect_target = false;
        } else if self.here_string {
            self.current.stdin_text.push(finished);
            self.here_string = false;
        } else if let Some(strip_tabs) = self.heredoc_delimiter.take() {
            self.heredocs.push(PendingHeredoc {
                delimiter: finished,
                strip_tabs,
                quoted,
                command: self.commands.len(),
            });
        } else if self.input_target {
            self.input_target = false;
        } else {
            self.current.words.push(finished);
        }
        self.in_word = false;
    }

    fn end_command(&mut self, piped_next: bool) {
        self.end_word();
        if !self.current.words.is_empty()
            || !self.current.writes_to.is_empty()
            || !self.current.stdin_text.is_empty()
        {
            self.current.piped = self.next_piped;
            self.commands.push(std::mem::take(&mut self.current));
        } else {
            // Here-documents of an empty command feed nothing.
            self.current = SimpleCommand::default();
        }
        self.next_piped = piped_next;
        self.redirect_target = false;
        self.input_target = false;
        self.here_string = false;
        self.heredoc_delimiter = None;
    }

    /// Read the bodies of the here-documents opened on the line that just
    /// ended, from `i` (just after the newline); returns where the next
    /// line starts.
    fn read_heredocs(&mut self, chars: &[char], mut i: usize, nested: &mut Vec<String>) -> usize {
        for heredoc in std::mem::take(&mut self.heredocs) {
            let mut body = String::new();
            while i < chars.len() {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |n| i + n);
                let line: String = chars[i..end].iter().collect();
                i = (end + 1).min(chars.len());
                let compared = if heredoc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if compared == heredoc.delimiter {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            if !heredoc.quoted {
                // An unquoted body still runs its substitutions.
                substitutions(&body, nested);
            }
            let target = match self.commands.get_mut(heredoc.command) {
                Some(command) => command,
                None => &mut self.current,
            };
            target.stdin_text.push(body);
        }
        i
    }
}

/// The `$(...)` and backtick substitutions of `text` (a here-document's
/// body), each added to `nested`.
fn substitutions(text: &str, nested: &mut Vec<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '$' if chars.get(i + 1) == Some(&'(') => {
                let (inner, end) = balanced(&chars, i + 2);
                nested.push(inner);
                i = end;
            }
            '`' => {
                let (inner, end) = backticks(&chars, i + 1);
                nested.push(inner);
                i = end;
            }
            _ => i += 1,
        }
    }
}

/// Whether `c` ends a word.
fn is_boundary(c: Option<&char>) -> bool {
    c.is_none_or(|c| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>'))
}

/// The text of `$'...'` (ANSI-C quoting) from just after the opening quote,
/// and the index after the closing one.
fn ansi_c_quoted(chars: &[char], start: usize) -> (String, usize) {
    let mut out = String::new();
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\'' => return (out, i + 1),
            '\\' if i + 1 < chars.len() => {
                let next = chars[i + 1];
                i += 2;
                match next {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'e' | 'E' => out.push('\u{1b}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let max = match next {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let digits: String = chars[i..]
                            .iter()
                            .take(max)
                            .take_while(|c| c.is_ascii_hexdigit())
                            .collect();
                        i += digits.len();
                        match u32::from_str_radix(&digits, 16)
                            .ok()
                            .and_then(char::from_u32)
                        {
                            Some(c) => out.push(c),
                            None => {
                                out.push('\\');
                                out.push(next);
                            }
                        }
                    }
                    '0'..='7' => {
                        let digits: String = std::iter::once(next)
                            .chain(chars[i..].iter().copied().take(2))
                            .take_while(|c| ('0'..='7').contains(c))
                            .collect();
                        i += digits.len() - 1;
                        match u32::from_str_radix(&digits, 8)
                            .ok()
                            .and_then(char::from_u32)
                        {
                            Some(c) => out.push(c),
                            None => out.push_str(&digits),
                        }
                    }
                    other => out.push(other),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, chars.len())
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
            ' ' | '\t' | '\r' => {
                state.end_word();
                i += 1;
            }
            '\n' => {
                state.end_command(false);
                i += 1;
                if !state.heredocs.is_empty() {
                    i = state.read_heredocs(&chars, i, nested);
                }
            }
            ';' | '&' | '|' | '(' | ')' => {
                // `&>` and `&>>` redirect both streams.
                if c == '&' && chars.get(i + 1) == Some(&'>') {
                    state.end_word();
                    i += 2;
                    if chars.get(i) == Some(&'>') {
                        i += 1;
                    }
                    state.redirect_target = true;
                    continue;
                }
                // `|` and `|&` pipe into the next command; `||` does not.
                let pipe = c == '|' && chars.get(i + 1) != Some(&'|');
                state.end_command(pipe);
                i += 1;
                if c == '|' && matches!(chars.get(i), Some('|' | '&')) {
                    i += 1;
                }
            }
            '\'' => {
                state.in_word = true;
                state.word_quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    state.word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '$' if chars.get(i + 1) == Some(&'\'') => {
                state.in_word = true;
                state.word_quoted = true;
                let (text, end) = ansi_c_quoted(&chars, i + 2);
                state.word.push_str(&text);
                i = end;
            }
            '$' if chars.get(i + 1) == Some(&'"') => {
                // `$"..."` (a translated string) is a double-quoted one.
                i += 1;
            }
            '"' => {
                state.in_word = true;
                state.word_quoted = true;
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
                state.word_quoted = true;
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
                // Process substitution: a command of its own, and a word
                // (a path such as /dev/fd/63) where it stands.
                let (inner, end) = balanced(&chars, i + 2);
                nested.push(inner);
                state.in_word = true;
                state.word.push_str("/dev/fd/63");
                i = end;
            }
            '>' | '<' => {
                // A file descriptor number before it belongs to it (`2>`).
                if state.in_word
                    && !state.word.is_empty()
                    && state.word.chars().all(|d| d.is_ascii_digit())
                {
                    state.word.clear();
                    state.in_word = false;
                } else {
                    state.end_word();
                }
                let output = c == '>';
                i += 1;
                if output {
                    // `>>`, `>|`.
                    if matches!(chars.get(i), Some('>' | '|')) {
                        i += 1;
                    }
                } else {
                    match chars.get(i) {
                        // `<>`: opened for reading and writing.
                        Some('>') => {
                            i += 1;
                            state.redirect_target = true;
                            continue;
                        }
                        Some('<') => {
                            i += 1;
                            if chars.get(i) == Some(&'<') {
                                i += 1;
                                state.here_string = true;
                            } else {
                                let strip_tabs = chars.get(i) == Some(&'-');
                                if strip_tabs {
                                    i += 1;
                                }
                                state.heredoc_delimiter = Some(strip_tabs);
                            }
                            continue;
                        }
                        _ => {}
                    }
                }
                // `>&2`, `<&0`, `>&-`: a descriptor; `>&FILE`: a file.
                if chars.get(i) == Some(&'&') {
                    i += 1;
                    if chars
                        .get(i)
                        .is_some_and(|c| c.is_ascii_digit() || *c == '-')
                    {
                        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                            i += 1;
                        }
                        continue;
                    }
                }
                if output {
                    state.redirect_target = true;
                } else {
                    state.input_target = true;
                }
            }
            '{' | '}' if !state.in_word && is_boundary(chars.get(i + 1)) => {
                // Group braces are reserved words when they stand alone:
                // `{ rm -rf /; }`; `}x` or `{a,b}` are words.
                state.end_command(false);
                i += 1;
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
    state.end_command(false);
    if !state.heredocs.is_empty() {
        let end = chars.len();
        state.read_heredocs(&chars, end, nested);
    }
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

/// A program that runs the command given after its own options.
struct Wrapper {
    /// Its options that take a value (`-u USER`).
    valued: &'static [&'static str],
    /// Positional arguments before the command (`timeout DURATION`).
    positional: usize,
}

fn wrapper(program: &str) -> Option<Wrapper> {
    let (valued, positional): (&'static [&'static str], usize) = match program {
        "sudo" => (
            &[
                "-u",
                "-g",
                "-C",
                "-D",
                "-h",
                "-p",
                "-r",
                "-t",
                "-U",
                "-T",
                "--user",
                "--group",
                "--host",
                "--prompt",
                "--chdir",
                "--role",
                "--type",
                "--close-from",
                "--other-user",
                "--command-timeout",
            ],
            0,
        ),
        "doas" => (&["-u", "-C"], 0),
        "env" => (&["-u", "-C", "--unset", "--chdir"], 0),
        "nohup" | "command" | "builtin" | "setsid" | "unbuffer" | "catchsegv" | "tsocks"
        | "proxychains" | "proxychains4" | "torsocks" | "fakeroot" => (&[], 0),
        "exec" => (&["-a"], 0),
        "time" => (&["-o", "-f", "--output", "--format"], 0),
        "nice" => (&["-n", "--adjustment"], 0),
        "ionice" => (&["-c", "-n", "-p", "-t", "--class", "--classdata"], 0),
        "chrt" => (&["-T", "-P", "-D"], 1),
        "taskset" => (&[], 1),
        "cgexec" => (&["-g"], 0),
        "timeout" => (&["-s", "--signal", "-k", "--kill-after"], 1),
        "stdbuf" => (&["-i", "-o", "-e"], 0),
        "xargs" => (
            &[
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
                "--max-lines",
                "--eof",
                "--max-chars",
                "--process-slot-var",
            ],
            0,
        ),
        "chroot" => (&["--userspec", "--groups"], 1),
        "flock" => (
            &["-w", "--wait", "--timeout", "-E", "--conflict-exit-code"],
            1,
        ),
        "strace" | "ltrace" => (
            &[
                "-o", "-e", "-p", "-s", "-u", "-E", "-I", "-P", "-a", "-b", "-O", "-S", "-X",
            ],
            0,
        ),
        "nsenter" => (
            &[
                "-t", "--target", "-S", "--setuid", "-G", "--setgid", "-w", "--wd", "-r", "--root",
            ],
            0,
        ),
        "unshare" | "setpriv" | "firejail" | "bwrap" | "torify" => (&[], 0),
        "systemd-run" => (
            &[
                "-p",
                "--property",
                "-u",
                "--unit",
                "--uid",
                "--gid",
                "-E",
                "--setenv",
                "--working-directory",
                "--slice",
                "--description",
                "-M",
                "--machine",
                "-H",
                "--host",
                "--on-calendar",
                "--on-active",
            ],
            0,
        ),
        "runuser" => (&["-u", "-g", "-G", "--user", "--group", "--supp-group"], 0),
        _ => return None,
    };
    Some(Wrapper { valued, positional })
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "rbash", "tcsh", "csh",
];

/// Options of `ssh` that take a value.
const SSH_VALUED: &[&str] = &[
    "-p", "-i", "-l", "-o", "-F", "-J", "-L", "-R", "-D", "-b", "-c", "-e", "-m", "-O", "-Q", "-S",
    "-W", "-w", "-B", "-E", "-I",
];

/// Add `command` and what it wraps (`sudo X`, `env A=1 X`, `bash -c "X"`,
/// `find -exec X ;`, `ssh host X`, `trap X EXIT`).
fn unwrap(
    mut command: SimpleCommand,
    depth: usize,
    out: &mut Vec<SimpleCommand>,
) -> Result<(), ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    // Reserved words and leading assignments are not the program:
    // `if rm -rf /; then`, `! reboot`, `PATH=/x rm ...`.
    while let Some(first) = command.words.first() {
        if RESERVED.contains(&first.as_str()) || is_assignment(first) {
            command.words.remove(0);
        } else {
            break;
        }
    }
    if command.words.is_empty() {
        if !command.writes_to.is_empty() {
            out.push(command);
        }
        return Ok(());
    }
    // A brace list as the first word is the command: `{rm,-rf,/}`.
    if let Some(list) = command.words[0]
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|list| list.contains(',') && !list.contains(['{', '}']))
    {
        let words: Vec<String> = list.split(',').map(str::to_owned).collect();
        command.words.splice(0..1, words);
    }
    let program = command.program().to_owned();
    let inner = |words: Vec<String>, command: &SimpleCommand| SimpleCommand {
        words,
        writes_to: command.writes_to.clone(),
        stdin_text: command.stdin_text.clone(),
        piped: command.piped,
    };
    if let Some(wrapper) = wrapper(&program) {
        let args = command.args();
        let mut index = 0;
        let mut payloads = Vec::new();
        while let Some(word) = args.get(index) {
            let is_option = word.starts_with('-') && word.len() > 1;
            let is_env = program == "env" && is_assignment(word);
            if !(is_option || is_env) {
                break;
            }
            index += 1;
            if *word == "--" {
                break;
            }
            // `env -S 'CMD ARGS'`, `flock -c CMD`, `su -c`: a command line.
            let command_line = matches!(
                (program.as_str(), word.as_str()),
                ("env", "-S" | "--split-string") | ("flock", "-c" | "--command")
            );
            if command_line {
                if let Some(payload) = args.get(index) {
                    payloads.push(payload.clone());
                }
                index += 1;
            } else if wrapper.valued.contains(&word.as_str()) {
                index += 1;
            }
        }
        let start = 1 + index + wrapper.positional;
        let mut inner_words = command.words.get(start..).unwrap_or_default().to_vec();
        // `flock FILE -c CMD`: the option comes after the lock file.
        if program == "flock"
            && let Some(at) = inner_words
                .iter()
                .position(|word| word == "-c" || word == "--command")
        {
            if let Some(payload) = inner_words.get(at + 1) {
                payloads.push(payload.clone());
            }
            inner_words.clear();
        }
        let wrapped = inner(inner_words, &command);
        out.push(command);
        for payload in payloads {
            parse(&payload, depth + 1, out)?;
        }
        if !wrapped.words.is_empty() {
            unwrap(wrapped, depth + 1, out)?;
        }
        return Ok(());
    }
    match program.as_str() {
        shell if SHELLS.contains(&shell) || shell == "su" => {
            let args = command.args().to_vec();
            if program == "busybox" && args.first().is_some_and(|first| !first.starts_with('-')) {
                let wrapped = inner(args, &command);
                out.push(command);
                return unwrap(wrapped, depth + 1, out);
            }
            // `bash -c CMD`, `sh -ec -- CMD`, `su -c CMD user`: the command
            // is the first operand after the option holding `c`.
            let payload = args
                .iter()
                .position(|arg| {
                    arg == "--command"
                        || (arg.starts_with('-')
                            && !arg.starts_with("--")
                            && arg[1..].contains('c'))
                })
                .and_then(|index| {
                    args[index + 1..]
                        .iter()
                        .find(|arg| !arg.starts_with('-') || arg.as_str() == "-")
                })
                .cloned();
            // `bash <<< CMD`, `sh <<EOF`: the shell reads its input.
            let fed = if payload.is_none() && args.iter().all(|arg| arg.starts_with('-')) {
                command.stdin_text.clone()
            } else {
                Vec::new()
            };
            out.push(command);
            for text in payload.into_iter().chain(fed) {
                parse(&text, depth + 1, out)?;
            }
            Ok(())
        }
        "eval" => {
            let payload = command.args().join(" ");
            out.push(command);
            parse(&payload, depth + 1, out)
        }
        "trap" => {
            let payload = command
                .args()
                .iter()
                .find(|arg| !arg.starts_with('-'))
                .cloned();
            out.push(command);
            match payload {
                Some(payload) => parse(&payload, depth + 1, out),
                None => Ok(()),
            }
        }
        "watch" => {
            // `watch CMD...` runs its words as a command line.
            let args = command.args();
            let mut index = 0;
            while let Some(word) = args.get(index) {
                if !word.starts_with('-') {
                    break;
                }
                index += 1;
                if matches!(word.as_str(), "-n" | "--interval") {
                    index += 1;
                }
            }
            let payload = args.get(index..).unwrap_or_default().join(" ");
            out.push(command);
            parse(&payload, depth + 1, out)
        }
        "ssh" => {
            // `ssh [options] HOST CMD...`: the rest is a remote command line.
            let args = command.args();
            let mut index = 0;
            while let Some(word) = args.get(index) {
                if !word.starts_with('-') {
                    break;
                }
                index += 1;
                if SSH_VALUED.contains(&word.as_str()) {
                    index += 1;
                }
            }
            let payload = args.get(index + 1..).unwrap_or_default().join(" ");
            out.push(command);
            parse(&payload, depth + 1, out)
        }
        "find" => {
            // `-exec CMD ... ;` and friends run CMD.
            let args = command.args().to_vec();
            out.push(command);
            let mut index = 0;
            while index < args.len() {
                if matches!(
                    args[index].as_str(),
                    "-exec" | "-execdir" | "-ok" | "-okdir"
                ) {
                    let rest = &args[index + 1..];
                    let end = rest
                        .iter()
                        .position(|arg| arg == ";" || arg == "+")
                        .unwrap_or(rest.len());
                    if end > 0 {
                        unwrap(
                            SimpleCommand {
                                words: rest[..end].to_vec(),
                                ..SimpleCommand::default()
                            },
                            depth + 1,
                            out,
                        )?;
                    }
                    index += end + 1;
                } else {
                    index += 1;
                }
            }
            Ok(())
        }
        _ => {
            out.push(command);
            Ok(())
        }
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        let name = name.strip_suffix('+').unwrap_or(name);
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

    /// Each line's commands, as [`programs`] gives them.
    fn assert_programs(cases: &[(&str, &[&str])]) {
        for (line, expected) in cases {
            assert_eq!(programs(line), *expected, "{line}");
        }
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
        assert_programs(cases);
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
            (
                "diff <(ls a) <(ls b)",
                &["diff /dev/fd/63 /dev/fd/63", "ls a", "ls b"],
            ),
            (
                "echo $(echo $(halt))",
                &["echo $(echo $(halt))", "echo $(halt)", "halt"],
            ),
        ];
        assert_programs(cases);
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
        assert_programs(cases);
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

    #[test]
    fn words_that_only_look_like_syntax_stay_words() {
        let cases: &[(&str, &[&str])] = &[
            // `}#` is a word, not a group's end and a comment.
            ("echo }#; rm -rf /usr", &["echo }#", "rm -rf /usr"]),
            (
                "echo <(true)#; reboot",
                &["echo /dev/fd/63#", "reboot", "true"],
            ),
            ("echo $'\\''; reboot", &["echo '", "reboot"]),
            ("$'\\x72m' -rf /", &["rm -rf /"]),
            ("$'\\162m' -rf /", &["rm -rf /"]),
            ("$\"rm\" -rf /", &["rm -rf /"]),
            ("rm${IFS}-rf${IFS}/", &["rm -rf /"]),
            ("! reboot", &["reboot"]),
            ("if rm -rf /usr; then :; fi", &["rm -rf /usr", ":"]),
            ("while :; do reboot; done", &[":", "reboot"]),
            ("coproc reboot", &["reboot"]),
        ];
        assert_programs(cases);
    }

    #[test]
    fn here_documents_are_read_as_input_not_commands() {
        // A quote in a body does not swallow the lines after it.
        assert_eq!(programs("cat <<E\n'\nE\nreboot"), ["cat", "reboot"]);
        // An unquoted body still runs its substitutions; a quoted one not.
        assert_eq!(programs("cat <<E\n$(halt)\nE"), ["cat", "halt"]);
        assert_eq!(programs("cat <<'E'\n$(halt)\nE"), ["cat"]);
        assert_eq!(
            programs("cat <<-E\n\t`halt`\n\tE\nls"),
            ["cat", "ls", "halt"]
        );
        // Fed to a shell, the text is a command line.
        assert_eq!(programs("bash <<< reboot"), ["bash", "reboot"]);
        assert_eq!(programs("sh <<E\nreboot\nE"), ["sh", "reboot"]);
        assert_eq!(
            programs("echo reboot | sh"),
            ["echo reboot", "sh", "reboot"]
        );
    }

    #[test]
    fn more_wrappers_and_payloads_are_looked_into() {
        let last = |line: &str| programs(line).pop().unwrap_or_default();
        let cases = [
            ("bash -c -- 'reboot'", "reboot"),
            ("bash -c -x 'reboot'", "reboot"),
            ("env -S 'reboot now'", "reboot now"),
            ("flock /tmp/l reboot", "reboot"),
            ("flock /tmp/l -c 'reboot'", "reboot"),
            ("watch -n 5 'reboot'", "reboot"),
            ("exec -a x reboot", "reboot"),
            ("/usr/bin/time -o f reboot", "reboot"),
            ("sudo --user root reboot", "reboot"),
            ("taskset 1 reboot", "reboot"),
            ("strace -o /dev/null reboot", "reboot"),
            ("systemd-run --unit x reboot", "reboot"),
            ("su -c 'reboot' root", "reboot"),
            ("ssh -p 22 host reboot now", "reboot now"),
            ("find . -exec sh -c 'reboot' \\;", "reboot"),
            ("trap 'reboot' EXIT", "reboot"),
        ];
        for (line, expected) in cases {
            assert_eq!(last(line), expected, "{line}");
        }
    }
}
