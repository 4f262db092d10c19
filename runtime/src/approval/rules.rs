//! What the approvals look for in each simple command: the hardline floor
//! (refused in every mode) and the dangerous patterns (asked about).
//!
//! Paths are compared after a lexical clean-up (`//`, `/./`, `/x/../`,
//! `$HOME` and `~`); a path with a glob or a variable is judged by its
//! literal part (`/u*` by `/`), so expansion cannot dodge a rule.

use super::shell::SimpleCommand;

/// What a rule needs to know beyond the command.
pub struct Context<'a> {
    /// Files of the data home no command may write: `.env`, `grants.toml`,
    /// `config.toml`, as absolute paths.
    pub protected: &'a [String],
    /// The home directory of the user commands run as (`~`, `$HOME`).
    pub home: Option<&'a str>,
}

/// Directories whose recursive removal is never allowed.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/usr",
    "/var",
    "/snap",
    "/System",
    "/Users",
    "/Library",
    "/Applications",
];

/// Block device names under `/dev/` that hold file systems.
const BLOCK_DEVICES: &[&str] = &[
    "sd", "hd", "vd", "xvd", "nvme", "mmcblk", "disk", "dm-", "md", "loop", "mapper/", "rdisk",
    "nbd", "block/", "sr", "zd", "rbd",
];

/// Interpreters that run what they are given.
const INTERPRETERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "fish",
    "python",
    "python3",
    "perl",
    "ruby",
    "node",
    "php",
    "lua",
    "tclsh",
    "osascript",
    "pwsh",
];

/// Programs that fetch from the network.
const FETCHERS: &[&str] = &[
    "curl", "wget", "fetch", "aria2c", "http", "nc", "ncat", "socat",
];

/// The hardline rule `command` breaks, if any.
pub fn hardline(command: &SimpleCommand, context: &Context<'_>) -> Option<&'static str> {
    let program = command.program();
    let args = command.args();
    let written: Vec<&str> = writes_to_paths(command).collect();
    if command.dynamic_program() && args.iter().any(|arg| is_root_or_home(arg, context)) {
        return Some(
            "a command name built from variables or globs, aimed at /, a system directory or the home directory",
        );
    }
    if program == "rm" && recursive(args) && args.iter().any(|arg| is_root_or_home(arg, context)) {
        return Some("recursive delete of /, a system directory or the home directory");
    }
    if program == "rm" && args.iter().any(|arg| arg == "--no-preserve-root") {
        return Some("rm --no-preserve-root");
    }
    if program == "find"
        && args
            .iter()
            .take_while(|arg| !arg.starts_with('-'))
            .any(|arg| is_root_or_home(arg, context))
        && (args.iter().any(|arg| arg == "-delete") || exec_removes(args))
    {
        return Some("recursive delete of /, a system directory or the home directory");
    }
    if wipes_disks(program, args) {
        return Some("making, wiping or repartitioning a disk (mkfs and friends)");
    }
    if program == "dd"
        && args
            .iter()
            .filter_map(|arg| arg.strip_prefix("of="))
            .any(is_block_device)
    {
        return Some("raw write to a block device (dd of=/dev/...)");
    }
    if written.iter().any(|path| is_block_device(path)) {
        return Some("raw write to a block device (> /dev/..., tee, cp)");
    }
    if matches!(program, "shred" | "blkdiscard") && args.iter().any(|arg| is_block_device(arg)) {
        return Some("raw write to a block device");
    }
    if program == "kill" && kills_everything(args) {
        return Some("kill -1 (every process)");
    }
    if program == "killall5" {
        return Some("killall5 (every process)");
    }
    if matches!(program, "shutdown" | "reboot" | "halt" | "poweroff") {
        return Some("shutdown, reboot, halt or poweroff");
    }
    if matches!(program, "init" | "telinit") && args.iter().any(|arg| arg == "0" || arg == "6") {
        return Some("init 0 or init 6 (halt or reboot)");
    }
    if matches!(program, "systemctl" | "loginctl")
        && args.iter().any(|arg| {
            matches!(
                arg.as_str(),
                "poweroff"
                    | "reboot"
                    | "halt"
                    | "kexec"
                    | "emergency"
                    | "rescue"
                    | "suspend"
                    | "hibernate"
            ) || matches!(
                arg.trim_end_matches(".target"),
                "poweroff" | "reboot" | "halt" | "kexec" | "emergency" | "rescue"
            ) && arg.ends_with(".target")
        })
    {
        return Some("systemctl poweroff, reboot or halt");
    }
    if program == "kexec" && args.iter().any(|arg| arg == "-e" || arg == "--exec") {
        return Some("kexec -e (reboot)");
    }
    if written
        .iter()
        .any(|path| clean(path, context.home) == "/proc/sysrq-trigger")
    {
        return Some("a write to /proc/sysrq-trigger (reboot, crash)");
    }
    if touches_protected(&written, context) {
        return Some("a write to the data home's .env, grants.toml or config.toml");
    }
    None
}

/// The dangerous pattern `command` matches, if any.
pub fn dangerous(command: &SimpleCommand, context: &Context<'_>) -> Option<&'static str> {
    let program = command.program();
    let args = command.args();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    if command.dynamic_program() {
        return Some("a command name built from variables or globs");
    }
    match program {
        "rm" if recursive(args) => return Some("recursive delete (rm -r)"),
        "chmod" | "chown" | "chgrp"
            if recursive(args) && args.iter().any(|arg| is_system_path(arg, context)) =>
        {
            return Some("recursive chmod/chown of a system path");
        }
        "chmod" if args.iter().any(|arg| world_writable(arg)) => {
            return Some("chmod 777/666 (writable by everyone)");
        }
        "chown" if recursive(args) && args.iter().any(|arg| arg.starts_with("root")) => {
            return Some("chown -R root");
        }
        "git" => {
            if let Some(rule) = git_rule(args) {
                return Some(rule);
            }
        }
        "find" if has("-delete") || exec_removes(args) => {
            return Some("find -delete or find -exec rm");
        }
        "xargs" if args.iter().any(|arg| arg == "rm" || arg.ends_with("/rm")) => {
            return Some("xargs rm");
        }
        "docker" | "podman" | "nerdctl" | "docker-compose" | "podman-compose"
            if docker_destroys(program, args) =>
        {
            return Some("docker stop, kill, rm or prune");
        }
        "systemctl" | "service"
            if args.iter().any(|arg| {
                matches!(
                    arg.as_str(),
                    "stop" | "restart" | "disable" | "mask" | "kill" | "isolate"
                )
            }) =>
        {
            return Some("stopping or disabling a system service");
        }
        "pkill" | "killall" => return Some("pkill or killall"),
        "kill" if args.iter().any(|arg| is_kill_signal(arg)) => return Some("kill -9"),
        "sudo" | "doas" | "su" | "runuser" | "pkexec" => {
            return Some("running as another user (sudo, su)");
        }
        "crontab" if has("-r") || has("-e") || args.iter().any(|arg| !arg.starts_with('-')) => {
            return Some("changing the crontab");
        }
        "iptables" | "ip6tables" | "nft" | "ufw" | "firewall-cmd" => {
            return Some("changing the firewall");
        }
        "truncate" => return Some("truncating a file"),
        "dd" => return Some("dd (raw copy)"),
        _ => {}
    }
    if runs_inline_code(program, args) {
        return Some("inline interpreter code (python -c, perl -e, node -e)");
    }
    if matches!(program, "awk" | "gawk" | "mawk" | "nawk")
        && args
            .iter()
            .any(|arg| arg.contains("system(") || arg.contains("| getline"))
    {
        return Some("inline interpreter code (awk system())");
    }
    if args.iter().any(|arg| mentions_metadata_address(arg)) || mentions_metadata_address(program) {
        return Some("the cloud metadata address (169.254.169.254 and friends)");
    }
    if writes_sensitive(command, context) {
        return Some("a write to ~/.ssh, a shell startup file, .netrc or /etc");
    }
    None
}

/// A line that fetches from the network and runs an interpreter
/// (`curl ... | sh`, `bash <(curl ...)`, `curl -o x && sh x`), or decodes
/// text into one (`base64 -d | bash`).
pub fn pipes_into_interpreter(line: &str, commands: &[SimpleCommand]) -> Option<&'static str> {
    let fetches = commands
        .iter()
        .any(|command| FETCHERS.contains(&command.program()));
    let decodes = commands.iter().any(|command| {
        matches!(
            command.program(),
            "base64" | "base32" | "xxd" | "openssl" | "gunzip" | "zcat" | "rev" | "tr"
        )
    });
    let interprets = commands.iter().any(|command| {
        let program = command.program();
        INTERPRETERS
            .iter()
            .any(|interpreter| program == *interpreter || version_of(program, interpreter))
            || matches!(program, "eval" | "source" | ".")
    });
    if fetches && interprets {
        return Some("running what was downloaded (curl | sh, bash <(curl ...), eval $(curl ...))");
    }
    let piped = line.contains('|') || line.contains("$(") || line.contains('`');
    if decodes && interprets && piped {
        return Some("running decoded text (base64 -d | sh)");
    }
    None
}

/// SQL that destroys data (`DROP TABLE`, `TRUNCATE`, `DELETE FROM`
/// without `WHERE`) in a line that runs an SQL client, as an argument or
/// piped in.
pub fn destroys_data(commands: &[SimpleCommand]) -> Option<&'static str> {
    const CLIENTS: &[&str] = &[
        "psql",
        "mysql",
        "mariadb",
        "sqlite3",
        "sqlcmd",
        "duckdb",
        "cockroach",
        "clickhouse-client",
        "clickhouse",
        "mongosh",
        "mongo",
        "cqlsh",
        "pgcli",
        "mycli",
        "litecli",
        "usql",
        "bq",
    ];
    // A client anywhere: `docker exec db psql -c ...` runs one too.
    let client = commands.iter().any(|command| {
        command
            .words
            .iter()
            .any(|word| CLIENTS.contains(&word.rsplit('/').next().unwrap_or(word)))
    });
    let destroys = commands.iter().any(|command| {
        command
            .words
            .iter()
            .chain(&command.stdin_text)
            .any(|text| sql_destroys(text))
    });
    (client && destroys).then_some("SQL DROP, TRUNCATE or DELETE without WHERE")
}

/// A fork bomb: a function (`f(){ ... }` or `function f { ... }`) that
/// calls itself at least twice in a pipe or in the background.
pub fn fork_bomb(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let spaced: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut definitions: Vec<(String, String)> = Vec::new();
    // `name(){body}`
    let mut rest = compact.as_str();
    while let Some(index) = rest.find("(){") {
        let name_start = rest[..index]
            .rfind([';', '&', '|', '\n', '{', '}', '(', ')'])
            .map_or(0, |i| i + 1);
        let name = rest[name_start..index].trim_start_matches("function");
        let body_end = rest[index..].find('}').map_or(rest.len(), |i| index + i);
        definitions.push((name.to_owned(), rest[index + 3..body_end].to_owned()));
        rest = &rest[index + 3..];
    }
    // `function name { body }`
    let mut rest = spaced.as_str();
    while let Some(index) = rest.find("function ") {
        let after = &rest[index + "function ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '(' && *c != '{')
            .collect();
        if let Some(open) = after.find('{') {
            let body = &after[open + 1..];
            let body = &body[..body.find('}').unwrap_or(body.len())];
            definitions.push((name, body.chars().filter(|c| !c.is_whitespace()).collect()));
        }
        rest = after;
    }
    definitions.iter().any(|(name, body)| {
        !name.is_empty()
            && (body.contains('&') || body.contains('|'))
            && body
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '-'))
                .filter(|word| word == name)
                .count()
                >= 2
    })
}

/// `python3 -c CODE`, `perl -e`, `ruby -e`, `node -e`, `php -r`: code the
/// rules cannot look into. (Shells' `-c` is parsed instead.)
fn runs_inline_code(program: &str, args: &[String]) -> bool {
    let short = |arg: &str, flags: &[char]| {
        arg.starts_with('-') && !arg.starts_with("--") && arg[1..].contains(flags)
    };
    let kind = [
        "python", "python3", "python2", "pypy3", "perl", "ruby", "node", "nodejs", "php", "lua",
        "deno", "bun",
    ]
    .into_iter()
    .find(|interpreter| program == *interpreter || version_of(program, interpreter));
    match kind {
        Some("python" | "python3" | "python2" | "pypy3") => {
            args.iter().any(|arg| short(arg, &['c']))
        }
        Some("perl" | "ruby") => args.iter().any(|arg| short(arg, &['e', 'E'])),
        Some("node" | "nodejs" | "deno" | "bun") => args
            .iter()
            .any(|arg| matches!(arg.as_str(), "-e" | "-p" | "--eval" | "--print" | "eval")),
        Some("php") => args.iter().any(|arg| arg == "-r"),
        Some("lua") => args.iter().any(|arg| arg == "-e"),
        _ => false,
    }
}

/// `python3.12` is `python3`'s kind.
fn version_of(program: &str, interpreter: &str) -> bool {
    program.strip_prefix(interpreter).is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
    })
}

fn recursive(args: &[String]) -> bool {
    args.iter().any(|arg| {
        // GNU tools accept any unambiguous prefix of a long option.
        (arg.len() >= 3 && "--recursive".starts_with(arg.as_str()))
            || (arg.starts_with('-')
                && !arg.starts_with("--")
                && (arg.contains('r') || arg.contains('R')))
    })
}

/// `path` with a leading `$HOME` (`${HOME}`, `${HOME:?}`, ...) written `~`.
fn home_as_tilde(path: &str) -> String {
    for variable in ["${HOME:?}", "${HOME}", "$HOME"] {
        if let Some(rest) = path.strip_prefix(variable)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("~{rest}");
        }
    }
    if let Some((_, rest)) = path
        .strip_prefix("${HOME:-")
        .and_then(|rest| rest.split_once('}'))
    {
        return format!("~{rest}");
    }
    path.to_owned()
}

/// `path` with `$HOME`/`~` made `~`, and `//`, `.` and `..` resolved
/// lexically. A path under the user's home is written `~/...`.
fn clean(path: &str, home: Option<&str>) -> String {
    let path = home_as_tilde(path);
    let (prefix, rest) = if let Some(rest) = path.strip_prefix('~') {
        // `~user` is another user's home: kept as it is.
        let (user, rest) = rest.split_once('/').unwrap_or((rest, ""));
        (format!("~{user}"), rest.to_owned())
    } else if let Some(rest) = path.strip_prefix('/') {
        (String::new(), rest.to_owned())
    } else {
        return path;
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let cleaned = format!("{prefix}/{}", parts.join("/"));
    let cleaned = if cleaned.len() > 1 {
        cleaned.trim_end_matches('/').to_owned()
    } else {
        cleaned
    };
    match home.map(|home| home.trim_end_matches('/')) {
        Some(home)
            if !home.is_empty()
                && (cleaned == home || cleaned.starts_with(&format!("{home}/"))) =>
        {
            format!("~{}", &cleaned[home.len()..])
        }
        _ => cleaned,
    }
}

/// The part of `path` the shell will not expand, and whether there is
/// more: `/u*` → (`/u`, true).
fn literal_part(path: &str) -> (&str, bool) {
    let end = path
        .find(['*', '?', '[', '{', '$', '`'])
        .unwrap_or(path.len());
    (&path[..end], end < path.len())
}

/// `/`, a system directory (or everything in it), the home directory, or
/// anyone's home (`~user`), after cleaning and globs.
fn is_root_or_home(arg: &str, context: &Context<'_>) -> bool {
    let arg = home_as_tilde(arg);
    let (literal, expands) = literal_part(&arg);
    // A glob's directory is what it empties: `/u*` empties `/`.
    let judged = if expands {
        match literal.rfind('/') {
            Some(0) => "/".to_owned(),
            Some(index) => literal[..index].to_owned(),
            None if literal.starts_with('~') => literal.to_owned(),
            None => return false,
        }
    } else {
        literal.to_owned()
    };
    if judged.is_empty() {
        return false;
    }
    let cleaned = clean(&judged, context.home);
    if cleaned.starts_with('~') && !cleaned[1..].contains('/') {
        return true;
    }
    SYSTEM_DIRS.contains(&cleaned.as_str())
}

fn is_system_path(arg: &str, context: &Context<'_>) -> bool {
    let arg = home_as_tilde(arg);
    let cleaned = clean(literal_part(&arg).0, context.home);
    SYSTEM_DIRS
        .iter()
        .any(|dir| cleaned == *dir || (*dir != "/" && cleaned.starts_with(&format!("{dir}/"))))
}

fn is_block_device(path: &str) -> bool {
    clean(path, None)
        .strip_prefix("/dev/")
        .is_some_and(|device| {
            BLOCK_DEVICES
                .iter()
                .any(|prefix| device.starts_with(prefix))
        })
}

/// Tools that make file systems, wipe or repartition disks.
fn wipes_disks(program: &str, args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    program.starts_with("mkfs")
        || matches!(
            program,
            "mke2fs"
                | "mkswap"
                | "wipefs"
                | "mkdosfs"
                | "mkntfs"
                | "mkexfatfs"
                | "mkfatfs"
                | "sfdisk"
                | "zpool"
        ) && (program != "zpool" || has("destroy") || has("create"))
        || (matches!(program, "sgdisk" | "gdisk")
            && args.iter().any(|arg| {
                matches!(
                    arg.as_str(),
                    "-Z" | "--zap-all" | "-o" | "--clear" | "-z" | "--zap"
                )
            }))
        || (matches!(program, "parted" | "fdisk")
            && args
                .iter()
                .any(|arg| matches!(arg.as_str(), "mklabel" | "mktable" | "rm" | "-w" | "--wipe")))
        || (program == "cryptsetup"
            && args.iter().any(|arg| {
                matches!(
                    arg.as_str(),
                    "luksFormat" | "erase" | "luksErase" | "reencrypt"
                )
            }))
        || (program == "nvme" && has("format"))
        || (program == "badblocks"
            && args
                .iter()
                .any(|arg| arg.starts_with('-') && arg.contains('w')))
}

/// `kill -1` alone, or `-1` (however written: `-01`) as the process after a
/// signal (`kill -9 -1`, `kill -s KILL -1`, `kill -- -1`): every process the
/// user may signal. `kill -1 1234` (SIGHUP to one process) is not.
fn kills_everything(args: &[String]) -> bool {
    let minus_one = |arg: &str| arg.parse::<i64>() == Ok(-1);
    if args.len() == 1 && minus_one(&args[0]) {
        return true;
    }
    let mut after_signal = false;
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            after_signal = true;
            continue;
        }
        match arg.as_str() {
            "-s" | "-n" | "--signal" => skip_value = true,
            other if minus_one(other) && after_signal => return true,
            _ => after_signal = true,
        }
    }
    false
}

fn is_kill_signal(arg: &str) -> bool {
    matches!(arg, "-9" | "-KILL" | "-SIGKILL" | "-s9" | "-sKILL")
}

fn world_writable(mode: &str) -> bool {
    let digits: String = mode.chars().filter(char::is_ascii_digit).collect();
    ((digits.len() == 3 || digits.len() == 4)
        && (digits.ends_with("777") || digits.ends_with("666")))
        || mode.split(',').any(|clause| {
            let (who, perms) = clause.split_once(['+', '=']).unwrap_or((clause, ""));
            (who.is_empty() || who.contains('a') || who.contains('o')) && perms.contains('w')
        })
}

fn exec_removes(args: &[String]) -> bool {
    args.windows(2).any(|pair| {
        matches!(pair[0].as_str(), "-exec" | "-execdir" | "-ok" | "-okdir")
            && matches!(
                pair[1].rsplit('/').next().unwrap_or_default(),
                "rm" | "shred" | "unlink" | "rmdir"
            )
    })
}

/// `git reset --hard`, `git clean -f`, `git push --force` and friends,
/// global options (`git -C dir`) and abbreviations (`--har`) included.
fn git_rule(args: &[String]) -> Option<&'static str> {
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if !arg.starts_with('-') {
            break;
        }
        index += 1;
        if matches!(
            arg.as_str(),
            "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" | "--exec-path"
        ) {
            index += 1;
        }
    }
    let sub = args.get(index)?.as_str();
    let rest = &args[index + 1..];
    let long = |name: &str, arg: &str| arg.len() >= 3 && name.starts_with(arg);
    let short = |flag: char, arg: &str| {
        arg.starts_with('-') && !arg.starts_with("--") && arg[1..].contains(flag)
    };
    match sub {
        "reset"
            if rest
                .iter()
                .any(|arg| long("--hard", arg) || long("--merge", arg)) =>
        {
            Some("git reset --hard")
        }
        "clean"
            if rest
                .iter()
                .any(|arg| short('f', arg) || long("--force", arg)) =>
        {
            Some("git clean -f")
        }
        "push"
            if rest.iter().any(|arg| {
                short('f', arg)
                    || long("--force", arg)
                    || arg.starts_with("--force")
                    || long("--mirror", arg)
                    || long("--delete", arg)
                    || short('d', arg)
                    || arg.starts_with('+')
                    || arg.starts_with(':')
            }) =>
        {
            Some("git push --force or --delete")
        }
        "checkout" | "restore" if rest.iter().any(|arg| arg == "." || arg == "--") => {
            Some("git checkout/restore . (discards changes)")
        }
        "branch"
            if rest.iter().any(|arg| {
                arg == "-D" || (long("--delete", arg) && rest.iter().any(|a| long("--force", a)))
            }) =>
        {
            Some("git branch -D")
        }
        "stash" if rest.iter().any(|arg| arg == "clear" || arg == "drop") => {
            Some("git stash clear/drop")
        }
        "filter-branch" | "filter-repo" => Some("git history rewrite"),
        _ => None,
    }
}

/// `docker rm`, `docker compose -f x down`, `docker -H h kill x`, ...
fn docker_destroys(program: &str, args: &[String]) -> bool {
    const VALUED: &[&str] = &[
        "-H",
        "--host",
        "-c",
        "--context",
        "--config",
        "-l",
        "--log-level",
        "-f",
        "--file",
        "-p",
        "--project-name",
        "--profile",
        "--env-file",
        "--project-directory",
        "--ansi",
    ];
    let mut words: Vec<&str> = Vec::new();
    if matches!(program, "docker-compose" | "podman-compose") {
        words.push("compose");
    }
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        index += 1;
        if arg.starts_with('-') {
            if VALUED.contains(&arg.as_str()) {
                index += 1;
            }
            continue;
        }
        words.push(arg);
        if words.len() == 3 {
            break;
        }
    }
    matches!(
        words.as_slice(),
        ["stop" | "kill" | "rm" | "rmi" | "down", ..]
            | [
                "system" | "volume" | "image" | "container" | "network" | "builder" | "buildx",
                "prune" | "rm" | "stop" | "kill",
                ..
            ]
            | ["compose", "down" | "rm" | "kill" | "stop", ..]
    )
}

fn mentions_metadata_address(text: &str) -> bool {
    const ADDRESSES: &[&str] = &[
        "169.254.169.254",
        "169.254.170.2",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "metadata.google.internal",
        "metadata.goog",
        "fd00:ec2::254",
        "100.100.100.200",
        "//metadata/",
        "//metadata:",
    ];
    let lower = text.to_ascii_lowercase();
    ADDRESSES.iter().any(|address| lower.contains(address)) || lower.ends_with("//metadata")
}

fn sql_destroys(text: &str) -> bool {
    let upper = text.to_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|word| !word.is_empty())
        .collect();
    words.windows(2).any(|pair| {
        matches!(
            pair,
            [
                "DROP",
                "TABLE"
                    | "DATABASE"
                    | "SCHEMA"
                    | "VIEW"
                    | "USER"
                    | "ROLE"
                    | "INDEX"
                    | "COLLECTION"
                    | "KEYSPACE"
                    | "OWNED"
            ] | ["TRUNCATE", _]
        )
    }) || (words.windows(2).any(|pair| pair == ["DELETE", "FROM"]) && !words.contains(&"WHERE"))
        || upper.contains("DROPDATABASE")
        || upper.contains(".DROP(")
        || upper.contains("DELETEMANY({})")
}

/// Programs that write to every file named in their arguments.
const WRITERS: &[&str] = &[
    "tee", "truncate", "sed", "perl", "chmod", "chown", "touch", "unlink", "shred", "rm",
];

/// Programs whose last argument (or `-t DIR`) is where they write.
const COPIERS: &[&str] = &[
    "cp", "mv", "install", "ln", "rsync", "scp", "ddrescue", "patch", "dd",
];

/// Where `command` writes: its redirections, the files of writers, the
/// destination of copiers, `dd of=`, `tar -C`.
fn writes_to_paths(command: &SimpleCommand) -> impl Iterator<Item = &str> {
    let program = command.program();
    let operands: Vec<&str> = command
        .args()
        .iter()
        .filter(|arg| !arg.starts_with('-') || arg.as_str() == "-")
        .map(String::as_str)
        .collect();
    let mut written: Vec<&str> = command.writes_to.iter().map(String::as_str).collect();
    if WRITERS.contains(&program) {
        written.extend(operands.iter().copied());
    }
    if COPIERS.contains(&program) {
        if program == "dd" {
            written.extend(
                command
                    .args()
                    .iter()
                    .filter_map(|arg| arg.strip_prefix("of=")),
            );
        } else if let Some(last) = operands.last() {
            written.push(last);
        }
        written.extend(
            command
                .args()
                .windows(2)
                .filter(|pair| pair[0] == "-t" || pair[0] == "--target-directory")
                .map(|pair| pair[1].as_str()),
        );
    }
    if program == "tar" {
        written.extend(
            command
                .args()
                .windows(2)
                .filter(|pair| pair[0] == "-C" || pair[0] == "--directory")
                .map(|pair| pair[1].as_str()),
        );
    }
    written.into_iter()
}

fn touches_protected(written: &[&str], context: &Context<'_>) -> bool {
    let dirs: Vec<String> = context
        .protected
        .iter()
        .filter_map(|path| {
            path.rsplit_once('/')
                .map(|(dir, _)| clean(dir, context.home))
        })
        .collect();
    written.iter().any(|path| {
        let cleaned = clean(path, context.home);
        context.protected.iter().any(|protected| {
            let protected = clean(protected, context.home);
            let name = protected.rsplit('/').next().unwrap_or_default();
            cleaned == protected
                || ((path.contains("TALARIA_HOME") || path.contains(".talaria"))
                    && cleaned.ends_with(&format!("/{name}")))
        }) || dirs.contains(&cleaned)
    })
}

fn writes_sensitive(command: &SimpleCommand, context: &Context<'_>) -> bool {
    const HOME_FILES: &[&str] = &[
        ".ssh",
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".zlogin",
        ".netrc",
        ".config/fish",
        ".gitconfig",
        ".npmrc",
        ".pypirc",
        ".docker/config.json",
        ".kube/config",
        ".aws/credentials",
    ];
    let sensitive_in_home = |rest: &str| {
        HOME_FILES
            .iter()
            .any(|file| rest == *file || rest.starts_with(&format!("{file}/")))
    };
    writes_to_paths(command).any(|path| {
        let cleaned = clean(path, context.home);
        let in_home = cleaned
            .strip_prefix('~')
            .and_then(|rest| rest.split_once('/').map(|(_, rest)| rest.to_owned()));
        in_home.is_some_and(|rest| sensitive_in_home(&rest))
            // Relative: the command may well run in the home directory.
            || (!path.starts_with('/') && !path.starts_with('~') && sensitive_in_home(path.trim_start_matches("./")))
            || cleaned.starts_with("/etc/")
            || cleaned == "/etc"
            || cleaned.starts_with("/root/")
            || cleaned.starts_with("/home/") && cleaned.split('/').nth(3).is_some_and(&sensitive_in_home)
    })
}
