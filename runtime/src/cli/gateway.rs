//! `talaria gateway run`: parse, start, print where it listens.

use std::io::Write as _;

use crate::app::App;
use crate::gateway::api_key::KeyOrigin;
use crate::gateway::{GatewayOptions, Started};

pub async fn run(
    app: App,
    host: Option<String>,
    port: Option<u16>,
    allow_root: bool,
) -> anyhow::Result<()> {
    let options = GatewayOptions {
        host,
        port,
        allow_root,
    };
    crate::gateway::run(app, options, print_started).await
}

/// The first line on stdout says where the API is (scripts and tests read
/// it when the port was 0); the key is never printed, only where it is.
fn print_started(started: &Started) {
    let key = match &started.key_origin {
        KeyOrigin::Generated(path) => format!("generated into {}", path.display()),
        KeyOrigin::Configured(origin) => format!("TALARIA_API_KEY from {origin}"),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "talaria gateway: API on http://{} (key: {key})",
        started.address
    );
    let _ = stdout.flush();
}
