//! The lab console (issue 13, CONSOLE-API.md): a web page to start, watch, change and stop runs, served by the lab
//! binary. [`demo`] serves it beside the normal `lab` run (which still ends by itself); [`serve_until_signal`] is
//! `lab console`, which waits for the user to start runs. Modules: [`routes`] the HTTP API and the page, [`manager`]
//! the one active run and its live feed, [`history`] the runs directory, [`form`] the checked start form, [`assets`]
//! the embedded page and the offline report, [`api`] the shapes, [`error`] the JSON error.

pub mod api;
pub mod assets;
pub mod chaos;
pub mod error;
pub mod form;
pub mod history;
pub mod manager;
pub mod routes;
mod shapes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::api::{RunMeta, Status};
use self::assets::Assets;
use self::history::History;
use self::manager::{Manager, id_stamp, now_rfc3339};
use self::routes::Console;
use crate::scaling::SloChoice;
use crate::setup::{load_profile, load_scaledobject};
use crate::{LabArgs, LabError};

/// The console's port when none is given.
pub const DEFAULT_PORT: u16 = 8089;
/// How long `lab console` waits for an active run to stop after SIGINT/SIGTERM before killing its children.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Options of the console.
#[derive(clap::Args, Debug, Clone)]
pub struct UiArgs {
    /// The console's port (0: any free port). When the default is taken, the lab says so and uses a free one.
    #[arg(long, env = "LAB_UI_PORT", default_value_t = DEFAULT_PORT)]
    pub ui_port: u16,
    /// The console's address. Anything but loopback needs --ui-token (the page can start load and stop processes).
    #[arg(long, env = "LAB_UI_HOST", default_value = "127.0.0.1")]
    pub ui_host: IpAddr,
    /// A token every /api/ request must carry (header x-lab-token; GETs may use ?token=).
    // Hyphen values allowed: a random URL-safe token starts with '-' one time in 64, and clap would read it as a flag.
    #[arg(
        long,
        env = "LAB_UI_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub ui_token: Option<String>,
    /// Do not serve the console during the run.
    #[arg(long, env = "LAB_NO_UI")]
    pub no_ui: bool,
    /// Run history: one directory per run (also the demo run's).
    #[arg(long, env = "LAB_RUNS_DIR", default_value = "reports/runs")]
    pub runs_dir: PathBuf,
    /// Serve the page from this directory (a `console/dist` being developed) instead of the copy built in.
    #[arg(long, env = "LAB_UI_ASSETS")]
    pub ui_assets: Option<PathBuf>,
}

/// The console, listening.
pub struct Server {
    pub addr: SocketAddr,
    pub manager: Arc<Manager>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// How long the console may take to finish open responses once asked to close (an SSE stream ends with its run's
/// final status, so the page sees how the run ended before the process exits).
const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl Server {
    /// Stop accepting, let open responses finish (bounded), then return.
    pub async fn close(self) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Refuse a console the network could reach without a token, or an empty token.
pub fn check(ui: &UiArgs) -> Result<(), LabError> {
    if ui.ui_token.as_deref() == Some("") {
        return Err(LabError::Usage("--ui-token must not be empty".into()));
    }
    if !ui.ui_host.is_loopback() && ui.ui_token.is_none() {
        return Err(LabError::Usage(format!(
            "--ui-host {} is not a loopback address: anyone who reaches it could start load and stop processes; \
             set --ui-token (or LAB_UI_TOKEN), or keep the default 127.0.0.1",
            ui.ui_host
        )));
    }
    if let Some(dir) = &ui.ui_assets
        && !dir.join(assets::INDEX).is_file()
    {
        return Err(LabError::Usage(format!(
            "--ui-assets {}: no {} there (build it with `bash scripts/console.sh`)",
            dir.display(),
            assets::INDEX
        )));
    }
    Ok(())
}

/// Bind (falling back to a free port when the one asked for is taken), print the URL and the `listening` line, and
/// serve in the background.
pub async fn start(ui: &UiArgs, base: LabArgs, manager: Arc<Manager>) -> Result<Server, LabError> {
    check(ui)?;
    let listener = match TcpListener::bind((ui.ui_host, ui.ui_port)).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && ui.ui_port != 0 => {
            eprintln!(
                "console: port {} is in use; using a free port instead",
                ui.ui_port
            );
            TcpListener::bind((ui.ui_host, 0)).await.map_err(|e| {
                LabError::Runtime(format!("console: cannot bind {}: {e}", ui.ui_host))
            })?
        }
        Err(e) => {
            return Err(LabError::Runtime(format!(
                "console: cannot bind {}:{}: {e}",
                ui.ui_host, ui.ui_port
            )));
        }
    };
    let addr = listener
        .local_addr()
        .map_err(|e| LabError::Runtime(format!("console: {e}")))?;
    let console = Arc::new(Console {
        manager: manager.clone(),
        base,
        assets: ui.ui_assets.clone().map_or(Assets::Embedded, Assets::Dir),
        token: ui.ui_token.clone(),
    });
    let app = routes::router(console);
    let shutdown = CancellationToken::new();
    let stopping = shutdown.clone();
    let task = tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(stopping.cancelled_owned());
        if let Err(e) = serving.await {
            eprintln!("console: the server stopped: {e}");
        }
    });
    println!("{}", url_line(addr, ui));
    eprintln!(
        "{}",
        serde_json::json!({
            "message": contract::listening::MESSAGE,
            "kind": contract::listening::kind::HTTP,
            "addr": addr.to_string(),
        })
    );
    Ok(Server {
        addr,
        manager,
        shutdown,
        task,
    })
}

/// `console: http://ADDR/` (and the token as the page reads it).
fn url_line(addr: SocketAddr, ui: &UiArgs) -> String {
    let fragment = ui
        .ui_token
        .as_ref()
        .map(|t| format!("#token={t}"))
        .unwrap_or_default();
    format!("console: http://{addr}/{fragment}")
}

/// `lab` with the console on: the run is checked first (bad input exits as it always did, with no record), the
/// console starts, and the run is recorded in the runs directory and fed to the page live. Returns the run's exit
/// code; the process ends with it.
pub async fn demo(args: LabArgs, ui: UiArgs) -> Result<i32, LabError> {
    let (_, config) = load_scaledobject(&args)?;
    let profile = load_profile(&args)?;
    SloChoice::resolve(args.slo.as_deref())?;
    check(&ui)?;
    // Recorded before the console accepts a request: its first answer already lists the run.
    let manager = Manager::new(History::new(ui.runs_dir.clone()));
    let stop = CancellationToken::new();
    let begun = manager.begin(&id_stamp(), &profile.name, 1.0, stop.clone(), |id, _dir| {
        let meta = RunMeta {
            id: id.to_string(),
            label: "lab".into(),
            profile: profile.name.clone(),
            status: Status::Starting,
            started_at: now_rfc3339(),
            ended_at: None,
            time_scale: args.time_scale,
            rate_multiplier: 1.0,
            scaledobject: config.name.clone(),
            max_replicas: args.max_replicas,
            exit_code: None,
            error: None,
            summary: None,
        };
        Ok::<_, std::io::Error>((meta, routes::triggers(&config), ()))
    });
    let (meta, mut hooks, ()) = match begun {
        Ok(Ok(begun)) => begun,
        // The record is a convenience: a runs directory that cannot be written does not stop the demo.
        Ok(Err(e)) => {
            eprintln!(
                "console: cannot record the run in {}: {e}",
                manager.history().root().display()
            );
            return crate::run::run_hooked(args, crate::RunHooks::default()).await;
        }
        Err(_) => unreachable!("a new manager has no active run"),
    };
    let server = match start(&ui, args.clone(), manager.clone()).await {
        Ok(server) => server,
        Err(e) => {
            let failed = Err(LabError::Runtime(e.to_string()));
            manager.finish(&meta.id, &failed, false, &args.out);
            return Err(e);
        }
    };
    // The terminal view redraws the screen: the URL stays in its header (other views keep the line printed).
    if crate::view::LiveMode::parse(&args.live) == crate::view::LiveMode::Tty {
        hooks.banner.push(url_line(server.addr, &ui));
    }
    let code = crate::run::run_signalled(|interrupt, registry| async move {
        // The page's stop button and the first signal both interrupt the run.
        let interrupted = interrupt.clone();
        let stop_on_signal = stop.clone();
        tokio::spawn(async move {
            interrupted.cancelled().await;
            stop_on_signal.cancel();
        });
        let out = args.out.clone();
        let result = crate::run_observed(args, stop.clone(), &registry, hooks).await;
        manager.finish(&meta.id, &result, stop.is_cancelled(), &out);
        result.map(|o| o.exit_code)
    })
    .await;
    server.close().await;
    code
}

/// `lab console`: serve and run what the page starts, until SIGINT/SIGTERM; then stop the active run (its partial
/// report is written) and exit 0. A second signal kills every child at once.
pub async fn serve_until_signal(base: LabArgs, ui: UiArgs) -> Result<i32, LabError> {
    let manager = Manager::new(History::new(ui.runs_dir.clone()));
    let server = start(&ui, base, manager.clone()).await?;
    let interrupt = CancellationToken::new();
    let immediate = CancellationToken::new();
    let signals = procs::Signals::install()
        .map_err(|e| LabError::Runtime(format!("cannot watch SIGINT/SIGTERM: {e}")))?;
    let watcher = tokio::spawn(crate::signals::watch(
        signals,
        interrupt.clone(),
        immediate.clone(),
        manager.registry.clone(),
    ));
    println!("console: waiting for runs; SIGINT/SIGTERM (Ctrl-C) stops");
    interrupt.cancelled().await;
    manager.stop_all();
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    while manager.active_id().is_some() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = immediate.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    watcher.abort();
    manager.registry.kill_all();
    server.close().await;
    Ok(contract::exit::OK)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::UiArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ui: UiArgs,
    }

    #[test]
    fn a_token_starting_with_a_hyphen_is_a_token_not_a_flag() {
        let cli =
            Cli::try_parse_from(["lab", "--ui-token", "-Wx3_k", "--ui-port", "0"]).expect("parses");
        assert_eq!(cli.ui.ui_token.as_deref(), Some("-Wx3_k"));
        assert_eq!(cli.ui.ui_port, 0);
    }
}
