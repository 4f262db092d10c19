//! A deliberately hostile skill. Each tool attempts one thing the sandbox
//! must refuse (or survive); the integration tests in `tests/` call them and
//! check both the refusal and that the host keeps working afterwards.

use std::collections::BTreeMap;
use std::io::Write;

use schemars::JsonSchema;
use serde::Deserialize;
use talaria_sdk::host::{self, Level};
use talaria_sdk::{ToolError, Toolset};

#[derive(Deserialize, JsonSchema)]
struct PathArgs {
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize, JsonSchema)]
struct TwoPathArgs {
    from: String,
    to: String,
}

#[derive(Deserialize, JsonSchema)]
struct SizeArgs {
    bytes: usize,
}

#[derive(Deserialize, JsonSchema)]
struct MegabytesArgs {
    megabytes: usize,
}

#[derive(Deserialize, JsonSchema)]
struct MillisArgs {
    millis: u64,
}

#[derive(Deserialize, JsonSchema)]
struct DepthArgs {
    depth: u64,
}

#[derive(Deserialize, JsonSchema)]
struct AddressArgs {
    address: String,
}

#[derive(Deserialize, JsonSchema)]
struct TextArgs {
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

fn read(args: PathArgs) -> Result<String, ToolError> {
    Ok(std::fs::read_to_string(&args.path)?)
}

fn list_dir(args: PathArgs) -> Result<Vec<String>, ToolError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&args.path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn write(args: WriteArgs) -> Result<&'static str, ToolError> {
    std::fs::write(&args.path, args.content)?;
    Ok("written")
}

fn append(args: WriteArgs) -> Result<&'static str, ToolError> {
    let mut file = std::fs::OpenOptions::new().append(true).open(&args.path)?;
    file.write_all(args.content.as_bytes())?;
    Ok("appended")
}

fn create(args: PathArgs) -> Result<&'static str, ToolError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.path)?;
    Ok("created")
}

fn truncate(args: PathArgs) -> Result<&'static str, ToolError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&args.path)?;
    Ok("truncated")
}

fn set_len_zero(args: PathArgs) -> Result<&'static str, ToolError> {
    // Opening read-only and then shrinking must fail too.
    let file = std::fs::File::open(&args.path)?;
    file.set_len(0)?;
    Ok("shrunk")
}

fn remove(args: PathArgs) -> Result<&'static str, ToolError> {
    std::fs::remove_file(&args.path)?;
    Ok("removed")
}

fn make_dir(args: PathArgs) -> Result<&'static str, ToolError> {
    std::fs::create_dir(&args.path)?;
    Ok("created")
}

fn rename(args: TwoPathArgs) -> Result<&'static str, ToolError> {
    std::fs::rename(&args.from, &args.to)?;
    Ok("renamed")
}

fn hard_link(args: TwoPathArgs) -> Result<&'static str, ToolError> {
    std::fs::hard_link(&args.from, &args.to)?;
    Ok("linked")
}

fn env(_: NoArgs) -> Result<BTreeMap<String, String>, ToolError> {
    Ok(std::env::vars().collect())
}

fn tcp_connect(args: AddressArgs) -> Result<&'static str, ToolError> {
    let mut stream = std::net::TcpStream::connect(&args.address)?;
    stream.write_all(b"escaped")?;
    Ok("connected")
}

fn spin(_: NoArgs) -> Result<u64, ToolError> {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
        if counter == u64::MAX {
            return Ok(counter);
        }
    }
}

fn sleep(args: MillisArgs) -> Result<&'static str, ToolError> {
    std::thread::sleep(std::time::Duration::from_millis(args.millis));
    Ok("slept")
}

fn grow_memory(args: MegabytesArgs) -> Result<usize, ToolError> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..args.megabytes {
        // Touch every page so the allocation is real.
        blocks.push(vec![0xA5; 1 << 20]);
    }
    Ok(blocks.iter().map(Vec::len).sum())
}

#[inline(never)]
fn descend(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let frame = std::hint::black_box([depth; 64]);
    descend(depth - 1).wrapping_add(frame[7])
}

/// Recursion whose frames live only on the wasm stack (no shadow-stack
/// array), so it exhausts the engine's stack rather than linear memory.
#[inline(never)]
fn descend_light(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    std::hint::black_box(descend_light(std::hint::black_box(depth - 1))).wrapping_add(1)
}

fn recurse(args: DepthArgs) -> Result<u64, ToolError> {
    Ok(descend(args.depth))
}

fn recurse_light(args: DepthArgs) -> Result<u64, ToolError> {
    Ok(descend_light(args.depth))
}

fn flood_stdout(args: SizeArgs) -> Result<usize, ToolError> {
    let chunk = vec![b'x'; 64 * 1024];
    let mut stdout = std::io::stdout();
    let mut written = 0;
    while written < args.bytes {
        let n = chunk.len().min(args.bytes - written);
        // Keep writing whatever the host does with it.
        let _ = stdout.write_all(&chunk[..n]);
        written += n;
    }
    let _ = stdout.flush();
    Ok(written)
}

fn big_result(args: SizeArgs) -> Result<String, ToolError> {
    Ok("y".repeat(args.bytes))
}

fn panic(args: TextArgs) -> Result<(), ToolError> {
    panic!("{}", args.text)
}

fn log(args: TextArgs) -> Result<&'static str, ToolError> {
    host::log(Level::Warn, &args.text);
    Ok("logged")
}

fn fail(args: TextArgs) -> Result<(), ToolError> {
    Err(ToolError::failed(args.text))
}

fn stderr(args: TextArgs) -> Result<(), ToolError> {
    let _ = std::io::stderr().write_all(args.text.as_bytes());
    Err(ToolError::failed("see stderr"))
}

#[derive(Deserialize, JsonSchema)]
struct RendezvousArgs {
    me: String,
    other: String,
    millis: u64,
}

/// Mark `/data/<me>`, then wait up to `millis` for `/data/<other>`: two
/// calls meet only if they run at the same time.
fn rendezvous(args: RendezvousArgs) -> Result<&'static str, ToolError> {
    std::fs::write(format!("/data/{}", args.me), b"here")?;
    let step = std::time::Duration::from_millis(10);
    let mut waited = 0;
    while waited < args.millis {
        if std::fs::metadata(format!("/data/{}", args.other)).is_ok() {
            return Ok("met");
        }
        std::thread::sleep(step);
        waited += 10;
    }
    Ok("alone")
}

#[derive(Deserialize, JsonSchema)]
struct OpenManyArgs {
    path: String,
    count: usize,
}

/// Open `path` `count` times and keep every handle open.
fn open_many(args: OpenManyArgs) -> Result<usize, ToolError> {
    let mut held = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        held.push(std::fs::File::open(&args.path)?);
    }
    Ok(held.len())
}

#[derive(Deserialize, JsonSchema)]
struct FillArgs {
    path: String,
    megabytes: usize,
}

/// Write `megabytes` MiB to `path` in 64 KiB chunks.
fn fill(args: FillArgs) -> Result<usize, ToolError> {
    let mut file = std::fs::File::create(&args.path)?;
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..args.megabytes * 16 {
        file.write_all(&chunk)?;
    }
    Ok(args.megabytes)
}

fn echo(args: TextArgs) -> Result<String, ToolError> {
    Ok(args.text)
}

#[derive(Deserialize, JsonSchema)]
struct ExecArgs {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
}

/// Whatever command the caller names: the host's rules, approvals and
/// backend decide.
fn exec(args: ExecArgs) -> Result<String, ToolError> {
    let argv: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let output = host::exec(
        &args.program,
        &argv,
        args.stdin.as_deref().map(str::as_bytes),
    )
    .map_err(ToolError::denied)?;
    Ok(format!(
        "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn tools() -> Toolset {
    Toolset::new()
        .tool("read", "Read a file.", read)
        .tool("list_dir", "List a directory.", list_dir)
        .tool("write", "Write a file.", write)
        .tool("append", "Append to an existing file.", append)
        .tool("create", "Create a new file.", create)
        .tool("truncate", "Open a file with truncation.", truncate)
        .tool(
            "set_len_zero",
            "Shrink a file opened read-only.",
            set_len_zero,
        )
        .tool("remove", "Remove a file.", remove)
        .tool("make_dir", "Create a directory.", make_dir)
        .tool("rename", "Rename a file.", rename)
        .tool("hard_link", "Hard-link a file.", hard_link)
        .tool("env", "Every environment variable the guest sees.", env)
        .tool("tcp_connect", "Open a TCP connection.", tcp_connect)
        .tool("spin", "Loop forever.", spin)
        .tool("sleep", "Block in a host call.", sleep)
        .tool("grow_memory", "Allocate and touch memory.", grow_memory)
        .tool("recurse", "Recurse deeply with large frames.", recurse)
        .tool(
            "recurse_light",
            "Recurse deeply with small frames.",
            recurse_light,
        )
        .tool("flood_stdout", "Write to stdout.", flood_stdout)
        .tool("big_result", "Return a large result.", big_result)
        .tool("panic", "Panic.", panic)
        .tool("log", "Log a line through the host.", log)
        .tool("fail", "Fail with a message.", fail)
        .tool("stderr", "Write to stderr, then fail.", stderr)
        .tool("echo", "Return the text.", echo)
        .tool(
            "rendezvous",
            "Wait for another call to show up.",
            rendezvous,
        )
        .tool("exec", "Run a native command through the host.", exec)
        .tool("open_many", "Hold many open files.", open_many)
        .tool("fill", "Write megabytes to a file.", fill)
}

talaria_sdk::export_skill!(tools);
