//! What the approvals look for in each simple command: the hardline floor
//! (refused in every mode) and the dangerous patterns (asked about).

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
];

/// Interpreters that run what is piped into them.
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby", "node", "php",
];

/// Programs that fetch from the network.
const FETCHERS: &[&str] = &["curl", "wget", "fetch", "aria2c", "http", "nc", "ncat"];

/// The hardline rule `command` breaks, if any.
pub fn hardline(command: &SimpleCommand, context: &Context<'_>) -> Option<&'static str> {
    let program = command.program();
    let args = command.args();
    if program == "rm" && recursive(args) && args.iter().any(|arg| is_root_or_home(arg, context)) {
        return Some("recursive delete of /, a system directory or the home directory");
    }
    if program == "rm" && args.iter().any(|arg| arg == "--no-preserve-root") {
        return Some("rm --no-preserve-root");
    }
    if program.starts_with("mkfs") || matches!(program, "mke2fs" | "mkswap" | "wipefs") {
        return Some("making or wiping a file system (mkfs)");
    }
    if program == "dd"
        && args
            .iter()
            .filter_map(|arg| arg.strip_prefix("of="))
            .any(is_block_device)
    {
        return Some("raw write to a block device (dd of=/dev/...)");
    }
    if command
        .writes_to
        .iter()
        .any(|target| is_block_device(target))
    {
        return Some("raw write to a block device (> /dev/...)");
    }
    if matches!(program, "shred" | "blkdiscard") && args.iter().any(|arg| is_block_device(arg)) {
        return Some("raw write to a block device");
    }
    if program == "kill" && kills_everything(args) {
        return Some("kill -1 (every process)");
    }
    if matches!(program, "shutdown" | "reboot" | "halt" | "poweroff") {
        return Some("shutdown, reboot, halt or poweroff");
    }
    if matches!(program, "init" | "telinit") && args.iter().any(|arg| arg == "0" || arg == "6") {
        return Some("init 0 or init 6 (halt or reboot)");
    }
    if program == "systemctl"
        && args.iter().any(|arg| {
            matches!(
                arg.as_str(),
                "poweroff" | "reboot" | "halt" | "kexec" | "emergency" | "rescue"
            )
        })
    {
        return Some("systemctl poweroff, reboot or halt");
    }
    if touches_protected(command, context) {
        return Some("a write to the data home's .env, grants.toml or config.toml");
    }
    None
}

/// The dangerous pattern `command` matches, if any.
pub fn dangerous(command: &SimpleCommand, context: &Context<'_>) -> Option<&'static str> {
    let program = command.program();
    let args = command.args();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    match program {
        "rm" if recursive(args) => return Some("recursive delete (rm -r)"),
        "chmod" | "chown" | "chgrp"
            if recursive(args) && args.iter().any(|arg| is_system_path(arg)) =>
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
            let sub = args.iter().find(|arg| !arg.starts_with('-'));
            match sub.map(String::as_str) {
                Some("reset") if has("--hard") => return Some("git reset --hard"),
                Some("clean")
                    if args
                        .iter()
                        .any(|arg| arg.starts_with('-') && arg.contains('f')) =>
                {
                    return Some("git clean -f");
                }
                Some("push") if has("--force") || has("-f") || has("--mirror") => {
                    return Some("git push --force");
                }
                Some("checkout" | "restore") if has(".") || has("--") && has(".") => {
                    return Some("git checkout/restore . (discards changes)");
                }
                _ => {}
            }
        }
        "find" if has("-delete") || exec_removes(args) => {
            return Some("find -delete or find -exec rm");
        }
        "xargs" if args.iter().any(|arg| arg == "rm" || arg.ends_with("/rm")) => {
            return Some("xargs rm");
        }
        "docker" | "podman" | "nerdctl" => {
            let sub: Vec<&str> = args
                .iter()
                .filter(|arg| !arg.starts_with('-'))
                .take(2)
                .map(String::as_str)
                .collect();
            if matches!(
                sub.as_slice(),
                ["stop" | "kill" | "rm" | "rmi", ..]
                    | [
                        "system" | "volume" | "image" | "container" | "network",
                        "prune" | "rm",
                        ..
                    ]
                    | ["compose", "down" | "rm" | "kill", ..]
            ) {
                return Some("docker stop, kill, rm or prune");
            }
        }
        "systemctl" | "service"
            if args.iter().any(|arg| {
                matches!(
                    arg.as_str(),
                    "stop" | "restart" | "disable" | "mask" | "kill"
                )
            }) =>
        {
            return Some("stopping or disabling a system service");
        }
        "pkill" | "killall" | "killall5" => return Some("pkill or killall"),
        "kill" if has("-9") || has("-KILL") || has("-SIGKILL") => return Some("kill -9"),
        "sudo" | "doas" | "su" => return Some("running as another user (sudo, su)"),
        "crontab" if has("-r") || has("-e") => return Some("changing the crontab"),
        "iptables" | "ip6tables" | "nft" | "ufw" => return Some("changing the firewall"),
        "truncate" => return Some("truncating a file"),
        "dd" => return Some("dd (raw copy)"),
        _ => {}
    }
    if args.iter().any(|arg| mentions_metadata_address(arg)) || mentions_metadata_address(program) {
        return Some("the cloud metadata address (169.254.169.254 and friends)");
    }
    if writes_sensitive(command, context) {
        return Some("a write to ~/.ssh, a shell startup file, .netrc or /etc");
    }
    None
}

/// A pipeline that feeds what the network sent into an interpreter
/// (`curl ... | sh`), or decoded text (`base64 -d | bash`).
pub fn pipes_into_interpreter(line: &str, commands: &[SimpleCommand]) -> Option<&'static str> {
    let fetches = commands
        .iter()
        .any(|command| FETCHERS.contains(&command.program()));
    let decodes = commands.iter().any(|command| {
        matches!(
            command.program(),
            "base64" | "xxd" | "openssl" | "gunzip" | "zcat"
        )
    });
    let interprets = commands.iter().any(|command| {
        let program = command.program();
        INTERPRETERS.iter().any(|interpreter| {
            program == *interpreter || program.starts_with(&format!("{interpreter}."))
        }) || program == "eval"
            || program == "source"
            || program == "."
    });
    let piped =
        line.contains('|') || line.contains("$(") || line.contains('`') || line.contains("<(");
    if fetches && interprets && piped {
        return Some("running what was downloaded (curl | sh, bash <(curl ...), eval $(curl ...))");
    }
    if decodes && interprets && piped {
        return Some("running decoded text (base64 -d | sh)");
    }
    None
}

/// SQL that destroys data (`DROP TABLE`, `TRUNCATE`, `DELETE FROM`
/// without `WHERE`) in a line that runs an SQL client, as an argument or
/// piped in.
pub fn destroys_data(line: &str, commands: &[SimpleCommand]) -> Option<&'static str> {
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
        "cqlsh",
        "pgcli",
        "mycli",
        "litecli",
        "usql",
    ];
    let client = commands
        .iter()
        .any(|command| CLIENTS.contains(&command.program()));
    (client && sql_destroys(line)).then_some("SQL DROP, TRUNCATE or DELETE without WHERE")
}

/// A fork bomb (`:(){ :|:& };:` and its renamings), looked for in the
/// raw text: a function that pipes into itself in the background.
pub fn fork_bomb(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.as_str();
    while let Some(index) = rest.find("(){") {
        let name_start = rest[..index]
            .rfind([';', '&', '|', '\n', '{', '}', '(', ')'])
            .map_or(0, |i| i + 1);
        let name = rest[name_start..index].trim_start_matches("function");
        let body_end = rest[index..].find('}').map_or(rest.len(), |i| index + i);
        let body = &rest[index + 3..body_end];
        if !name.is_empty() && body.contains(&format!("{name}|{name}")) && body.contains('&') {
            return true;
        }
        rest = &rest[index + 3..];
    }
    false
}

fn recursive(args: &[String]) -> bool {
    args.iter().any(|arg| {
        arg == "--recursive"
            || (arg.starts_with('-')
                && !arg.starts_with("--")
                && (arg.contains('r') || arg.contains('R')))
    })
}

/// `/`, a system directory (or everything in it), or the home directory.
fn is_root_or_home(arg: &str, context: &Context<'_>) -> bool {
    let trimmed = arg.trim_end_matches("/*").trim_end_matches('*');
    let normalized = if trimmed.len() > 1 {
        trimmed.trim_end_matches('/')
    } else {
        trimmed
    };
    let normalized = if normalized.is_empty() && arg.starts_with('/') {
        "/"
    } else {
        normalized
    };
    if SYSTEM_DIRS.contains(&normalized) {
        return true;
    }
    if matches!(normalized, "~" | "$HOME" | "${HOME}" | "~/" | "/home/*") {
        return true;
    }
    context
        .home
        .is_some_and(|home| normalized == home.trim_end_matches('/'))
}

fn is_system_path(arg: &str) -> bool {
    let normalized = arg.trim_end_matches("/*").trim_end_matches('/');
    let normalized = if normalized.is_empty() {
        "/"
    } else {
        normalized
    };
    SYSTEM_DIRS.iter().any(|dir| {
        normalized == *dir || (*dir != "/" && normalized.starts_with(&format!("{dir}/")))
    })
}

fn is_block_device(path: &str) -> bool {
    path.strip_prefix("/dev/").is_some_and(|device| {
        BLOCK_DEVICES
            .iter()
            .any(|prefix| device.starts_with(prefix))
    })
}

/// `kill -1` alone, or `-1` as the process after a signal (`kill -9 -1`,
/// `kill -s KILL -1`, `kill -- -1`): every process the user may signal.
/// `kill -1 1234` (SIGHUP to one process) is not.
fn kills_everything(args: &[String]) -> bool {
    if args.len() == 1 && args[0] == "-1" {
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
            "-1" if after_signal => return true,
            _ => after_signal = true,
        }
    }
    false
}

fn world_writable(mode: &str) -> bool {
    let digits: String = mode.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 3 || digits.len() == 4) && (digits.ends_with("777") || digits.ends_with("666"))
        || mode == "a+w"
        || mode == "o+w"
        || mode.contains("a+rwx")
}

fn exec_removes(args: &[String]) -> bool {
    args.windows(2).any(|pair| {
        matches!(pair[0].as_str(), "-exec" | "-execdir" | "-ok" | "-okdir")
            && (pair[1] == "rm" || pair[1].ends_with("/rm") || pair[1] == "shred")
    })
}

fn mentions_metadata_address(text: &str) -> bool {
    const ADDRESSES: &[&str] = &[
        "169.254.169.254",
        "metadata.google.internal",
        "metadata.goog",
        "fd00:ec2::254",
        "100.100.100.200",
        "169.254.170.2",
    ];
    ADDRESSES.iter().any(|address| text.contains(address))
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
            ["DROP", "TABLE" | "DATABASE" | "SCHEMA"] | ["TRUNCATE", _]
        )
    }) || (words.windows(2).any(|pair| pair == ["DELETE", "FROM"]) && !words.contains(&"WHERE"))
}

/// Programs that write to the files named in their arguments.
const WRITERS: &[&str] = &[
    "tee", "cp", "mv", "install", "ln", "rm", "truncate", "sed", "perl", "dd", "chmod", "chown",
    "touch", "rsync", "scp", "unlink", "shred", "patch",
];

fn writes_to_paths(command: &SimpleCommand) -> impl Iterator<Item = &str> {
    let program = command.program();
    let writer = WRITERS.contains(&program);
    command.writes_to.iter().map(String::as_str).chain(
        command
            .args()
            .iter()
            .filter(move |_| writer)
            .map(|arg| arg.strip_prefix("of=").unwrap_or(arg)),
    )
}

fn touches_protected(command: &SimpleCommand, context: &Context<'_>) -> bool {
    writes_to_paths(command).any(|path| {
        context.protected.iter().any(|protected| {
            path == protected
                || path.ends_with(&format!(
                    "/{}",
                    protected.rsplit('/').next().unwrap_or_default()
                )) && (path.contains("TALARIA_HOME") || path.contains(".talaria"))
        })
    })
}

fn writes_sensitive(command: &SimpleCommand, context: &Context<'_>) -> bool {
    const HOME_FILES: &[&str] = &[
        ".ssh/",
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".netrc",
        ".config/fish/config.fish",
        ".ssh",
    ];
    writes_to_paths(command).any(|path| {
        let in_home = path
            .strip_prefix("~/")
            .or_else(|| path.strip_prefix("$HOME/"))
            .or_else(|| path.strip_prefix("${HOME}/"))
            .or_else(|| {
                context
                    .home
                    .and_then(|home| path.strip_prefix(&format!("{}/", home.trim_end_matches('/'))))
            });
        in_home.is_some_and(|rest| HOME_FILES.iter().any(|file| rest.starts_with(file)))
            || path.starts_with("/etc/")
            || path.starts_with("/root/.ssh")
    })
}
